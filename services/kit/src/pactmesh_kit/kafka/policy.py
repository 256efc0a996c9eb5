"""What a message its handler could not take comes to: the one place that decides.

Every failure of a subscriber's message is put to ``FailurePolicy.verdict``, which
answers ``Retry`` (handle it again, in place, after a pause: the key's later messages
and the batch's commit wait) or ``Reject`` (dead-letter it, and carry on).

Today: a message the contract refuses (``InvalidMessage``) or its handler refuses
(``RefusedMessage``) is rejected at once; any other failure is retried with a growing
pause, and rejected as ``refused`` after ``max_attempts``.
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
    """Poison is rejected; a failing handler is retried ``max_attempts`` times in all."""

    max_attempts: int = 5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def verdict(self, error: Exception, *, attempt: int) -> Verdict:
        """What the message whose ``attempt``-th try raised ``error`` comes to."""
        if isinstance(error, InvalidMessage):
            return Reject(error.code, str(error), error.errors)
        if isinstance(error, RefusedMessage):
            return Reject("refused", error.reason)
        if attempt < self.max_attempts:
            return Retry(min(self.backoff_initial_s * 2 ** (attempt - 1), self.backoff_max_s))
        return Reject("refused", f"handler failed {attempt} times: {error!r}")
