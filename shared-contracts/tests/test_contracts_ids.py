"""UUIDv7 event ids: version 7, RFC 9562 variant, and strictly increasing in one process."""

from __future__ import annotations

import time
import uuid
from itertools import pairwise

from pactmesh_contracts.ids import uuid7


def test_uuid7_is_version_7_with_the_rfc_variant() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_embeds_the_current_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    # the counter may borrow a millisecond or two when it is exhausted
    assert before <= value.int >> 80 <= after + 2


def test_uuid7_is_strictly_increasing_across_10000_calls() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert all(a.int < b.int for a, b in pairwise(ids))
    assert all(i.version == 7 for i in ids)
    # sorting by the string form (what SQLite and logs do) agrees with creation order
    assert sorted(ids, key=str) == ids
