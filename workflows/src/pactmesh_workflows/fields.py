"""What routing extracts from a request for a workflow's input contract.

A workflow declares the fields its input needs; routing puts every registered field in
the schema its model fills, extracts them deterministically as well, and checks what a
model answers against each field's rule (so an identifier the request never states, or
an amount out of range, is sent back for repair). Fields several workflows need (an
amount) are declared once here and shared; two fields of one name must be the same.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue


@dataclass(frozen=True)
class RoutingField:
    """One field routing may extract. Subclasses say its type, parsing and rules."""

    name: str
    description: str
    """What the field is, for the model that fills routing's schema."""
    hint: str
    """How to copy it, in a few words of routing's prompt ("order numbers as digits")."""
    find: re.Pattern[str]
    """Finds the field in a request: the first group that matched is the value."""
    scoped: bool = False
    """Extracted only for a workflow that declares it, or before one is chosen (a vendor
    "from Acme" is a supplier for procurement, a place anywhere else)."""

    @property
    def annotation(self) -> Any:
        """The field's type in routing's schema (always optional)."""
        return str | None

    def extract(self, text: str) -> JsonValue | None:
        """The value ``text`` states, or None."""
        match = self.find.search(text)
        if match is None:
            return None
        return self.parse(next(g for g in match.groups() if g is not None))

    def parse(self, raw: str) -> JsonValue:
        """The value from the matched text."""
        return raw

    def errors(self, value: Any, text: str) -> list[str]:
        """What is wrong with ``value`` as the answer about ``text`` (empty: nothing)."""
        return []


@dataclass(frozen=True)
class AmountField(RoutingField):
    """A money amount, as a number in ``(0, maximum]``."""

    maximum: float = 100_000_000.0

    @property
    def annotation(self) -> Any:
        return float | None

    def parse(self, raw: str) -> JsonValue:
        return float(raw.replace(",", ""))

    def errors(self, value: Any, text: str) -> list[str]:
        if math.isfinite(value) and 0 < value <= self.maximum:
            return []
        return [f"fields.{self.name}: {value!r} is not between 0 and {self.maximum:,.0f}"]


@dataclass(frozen=True)
class IdentifierField(RoutingField):
    """An identifier: it must look like ``example`` and occur in the request."""

    pattern: re.Pattern[str] = field(default=re.compile(r"^\S+$"))
    example: str = ""
    upper: bool = False
    """Written in capitals however the request wrote it (``sh-77`` is ``SH-77``)."""
    stands_for: str = ""
    """What the identifier names ("the shipment"): routing compares requests by meaning
    with the identifier replaced by this, so its digits do not count (empty: kept)."""

    def parse(self, raw: str) -> JsonValue:
        return raw.upper() if self.upper else raw

    def errors(self, value: Any, text: str) -> list[str]:
        return self._errors(f"fields.{self.name}", value, text)

    def _errors(self, where: str, value: str, text: str) -> list[str]:
        if not self.pattern.match(value):
            return [f"{where}: {value!r} is not like {self.example!r}"]
        if value.lower() not in text.lower():
            return [f"{where}: {value!r} does not occur in the request"]
        return []


@dataclass(frozen=True)
class IdentifierListField(IdentifierField):
    """Several identifiers of one kind (diagnosis codes), each checked on its own."""

    most: int = 12

    @property
    def annotation(self) -> Any:
        return list[str] | None

    def extract(self, text: str) -> JsonValue | None:
        found: list[JsonValue] = [
            self.parse(next(g for g in m.groups() if g is not None))
            for m in self.find.finditer(text)
        ]
        unique = list(dict.fromkeys(found))[: self.most]
        return unique or None

    def errors(self, value: Any, text: str) -> list[str]:
        if not 0 < len(value) <= self.most:
            return [f"fields.{self.name}: list 1 to {self.most} of them"]
        return [
            e for n, v in enumerate(value) for e in self._errors(f"fields.{self.name}.{n}", v, text)
        ]


@dataclass(frozen=True)
class NameField(RoutingField):
    """A name (a supplier), of 1 to ``max_length`` characters."""

    max_length: int = 120

    def parse(self, raw: str) -> JsonValue:
        return raw.rstrip(".")

    def errors(self, value: Any, text: str) -> list[str]:
        if 0 < len(value.strip()) <= self.max_length:
            return []
        return [f"fields.{self.name}: must be a name of 1 to {self.max_length} characters"]


_NUMERAL = r"(\d[\d,]*(?:\.\d+)?)"

AMOUNT = AmountField(
    "amount",
    "A money amount stated in the request (refund or order total), as a number.",
    "an amount as a number",
    re.compile(rf"[$€£]\s?{_NUMERAL}|{_NUMERAL}\s?(?:USD|EUR|GBP|dollars|euros)", re.I),
)
"""Shared by every workflow whose input takes an amount."""

_STATED = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")


def stated_numbers(text: str) -> set[float]:
    """Every number written in ``text`` (``9,600``, ``9600.00``, ``$15,000``...)."""
    return {float(m.group(1).replace(",", "") + (m.group(2) or "")) for m in _STATED.finditer(text)}


def states(text: str, value: float) -> bool:
    """Whether ``text`` writes ``value`` out itself (to the cent): what a gate may trust an
    amount for, where one a model extracted is only a claim."""
    return any(abs(number - value) < 0.005 for number in stated_numbers(text))
