"""Files a process creates once under its data dir and every later process reads."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def created_once(path: Path, content: Callable[[], bytes]) -> bytes:
    """What ``path`` holds, written with ``content()`` (mode 600) if it did not exist.

    Several processes may start at once: each writes its candidate to a file of its own
    and ``os.link`` publishes exactly one of them (a link never replaces a file); the
    others read the one published. A crash leaves no half-written ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content())
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()
