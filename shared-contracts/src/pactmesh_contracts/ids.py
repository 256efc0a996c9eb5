"""Sortable event identifiers.

RFC 9562 UUIDv7 is written out here rather than imported because the contracts
package depends on pydantic alone; Python 3.11's ``uuid`` module has no ``uuid7``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A time-ordered UUIDv7: 48 bits of Unix milliseconds, then a per-millisecond counter.

    The 12-bit counter (seeded randomly each millisecond) keeps ids minted in the same
    millisecond by this process strictly increasing.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)
