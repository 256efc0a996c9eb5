"""What a message its handler could not take comes to: the one place that decides.

Every failure of a subscriber's message is put to ``FailurePolicy.verdict``, which
answers ``Reject`` (dead-letter it, and carry on) or ``Retry`` (handle it again, in
place, after a pause; meanwhile its partition takes no new work and is not committed).

Poison is rejected: a message the contract refuses (``InvalidMessage``: not JSON, a type
the topic does not carry, invalid fields, too large) or that its handler refuses
(``RefusedMessage``: an unknown run, a principal the access policy does not allow).
Anything else is an outage of something the handler depends on (a database, the
broker, the disk, a backend past its own retries) and is retried, with a pause that
doubles up to ``backoff_max_s``, for as long as it takes: a dependency coming back
finds every message where it was, nothing dead-lettered.

A bug in a handler (a ``KeyError`` on well-formed input) is not poison by this rule: it
stalls its partition, logged at every attempt with the message's position and event
id, and the service reports not ready until it is fixed (Kafka Streams' choice too: a
bug must not quietly dead-letter a workflow's events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pactmesh_contracts.events import DeadLetterCode

from pactmesh_kit.errors import InvalidMessage, RefusedMessage


@dataclass(frozen=True)
class Retry:
    """Handle the message again after ``after_s`` seconds."""

    after_s: float


@dataclass(frozen=True)
class Reject:
    """Dead-letter the message with this code and reason, and move on."""

    code: DeadLetterCode
    reason: str
    errors: list[dict[str, Any]] = field(default_factory=list)


Verdict = Retry | Reject


@dataclass(frozen=True)
class FailurePolicy:
    """Poison is rejected at once; every other failure is retried with capped
    exponential backoff, without limit."""

    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0

    def verdict(self, error: Exception, *, attempt: int) -> Verdict:
        """What the message whose ``attempt``-th try raised ``error`` comes to."""
        if isinstance(error, InvalidMessage):
            return Reject(error.code, str(error), error.errors)
        if isinstance(error, RefusedMessage):
            return Reject("refused", error.reason)
        return Retry(self.backoff_s(attempt))

    def backoff_s(self, attempt: int) -> float:
        """The pause after the ``attempt``-th failed try."""
        exponent = min(attempt - 1, 62)  # 2**62 * any initial pause is past any cap
        return float(min(self.backoff_initial_s * 2**exponent, self.backoff_max_s))
