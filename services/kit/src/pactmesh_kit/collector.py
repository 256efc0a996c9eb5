"""How a service's Python garbage collector runs.

CPython's cyclic collector runs a young collection every 700 net allocations of
container objects, and a full one (every object the process holds) after ten of the
next older kind. A service with hundreds of workflows in flight keeps many young
objects alive between two awaits, so the young collections find little garbage and
promote the survivors, and the full collections walk the whole heap: every module,
every pydantic schema, every model loaded at start-up. Measured with ``bench/engine.py``
(the orchestrator's engine, 500 runs at once): with CPython's thresholds 4.3-5.6 of
12.6-16.5 CPU ms per workflow were spent collecting, with ``(100_000, 50, 100)``
0.75-0.84 of 8.7-9.8 (docs/benchmarks.md has this A/B, and the whole mesh's).

Two levers, both applied by a service process (``pactmesh_kit.app.serve``):

* ``configure`` sets the thresholds (``PACTMESH_GC_THRESHOLDS``): young collections a
  hundred times less often, full ones only after many of them.
* ``ready`` then moves what start-up created (modules, schemas, models, the app) to
  the collector's permanent generation once the service is ready, so no collection
  walks it again (CPython's ``gc.freeze``, meant for long-lived objects created before
  the work begins). Only in a process ``configure`` set up: an app started inside a
  test process leaves that process's collector alone.

Reference counting still frees every object that is not in a cycle the moment it is
unused: the thresholds only delay finding cyclic garbage, which the young collections
(every 100,000 net container allocations) keep finding.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (100_000, 50, 100)
"""The thresholds a service runs with unless told otherwise (see the module)."""


_configured = False


def configure(thresholds: tuple[int, int, int]) -> None:
    """Set the collector's thresholds (``gc.set_threshold``), and have ``ready`` freeze
    start-up's objects: this process is a service."""
    global _configured
    gc.set_threshold(*thresholds)
    _configured = True


def ready() -> int:
    """Once the service is ready: collect what start-up left behind, then exclude every
    object alive now from all later collections; the number of objects frozen (0 in a
    process ``configure`` did not set up)."""
    if not _configured:
        return 0
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("%d objects from start-up frozen out of the garbage collector", frozen)
    return frozen
