"""Opaque keyset cursors for the review list.

A cursor names the last review a page ended on by its sort key (requested_at,
review_id), not by an offset, so reviews added while a reviewer pages through the
queue neither repeat nor hide older ones.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from pactmesh_hitl.domain.errors import ReviewError
from pactmesh_hitl.domain.reviews import Review


def encode_cursor(last: Review) -> str:
    """The cursor for the page after ``last``."""
    raw = json.dumps([last.requested_at.isoformat(), str(last.review_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; ``ReviewError("invalid")`` for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, review_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, uuid.UUID(review_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
        message = "not a cursor this API returned"
        raise ReviewError(
            "invalid",
            message,
            [{"loc": ["query", "cursor"], "msg": message, "type": "value_error"}],
        ) from exc
