"""honcho, waiting for the services' own shutdown before it kills them.

honcho stops every process with SIGTERM and SIGKILLs what is left after a fixed 5 s
(``honcho.manager.KILL_WAIT``, which no option changes). A service's shutdown takes up to
PACTMESH_SHUTDOWN_GRACE_S (HTTP requests, then Kafka's batches in hand, then closing),
so the wait is raised to that, plus 5 s. Usage: ``python infra/launch.py <honcho args>``.
"""

from __future__ import annotations

import os
import sys

import honcho.manager
from honcho.command import main

honcho.manager.KILL_WAIT = float(os.environ.get("PACTMESH_SHUTDOWN_GRACE_S", "30")) + 5
sys.argv[0] = "honcho"
main()
