"""kafka.sh's local multi-node KRaft cluster, for the tests that need one: started in a
data dir of its own on ports of ``LOCAL_CLUSTER_PORTS``, a node killed (``kill -9``) and
brought back, and every node stopped afterwards (by kafka.sh, by PID)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pactmesh_harness.mesh import KAFKA_SH, Broker, free_port_block, kafka_sh_env, wait_for
from pactmesh_harness.procstat import alive


@dataclass
class LocalCluster:
    """``nodes`` combined broker+controller nodes of kafka.sh, in ``data_dir``."""

    data_dir: Path
    nodes: int = 3
    env: dict[str, str] = field(init=False)
    bootstrap: str = field(init=False)
    """The bootstrap servers: every node's client listener."""
    startup_s: float = 0.0

    def __post_init__(self) -> None:
        port = free_port_block(2 * self.nodes)
        self.env = {
            **kafka_sh_env(),
            "KAFKA_NODES": str(self.nodes),
            "KAFKA_DATA_DIR": str(self.data_dir),
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(port + 1),
            # a loaded machine can take minutes to bring a restarted node's metadata up
            "KAFKA_START_TIMEOUT": "300",
        }
        self.bootstrap = ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(self.nodes))

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """``kafka.sh <command>`` for this cluster."""
        return subprocess.run(
            [str(KAFKA_SH), command], env=self.env, capture_output=True, text=True, timeout=420
        )

    def start(self) -> float:
        """Start every node not running (all at first, the killed one later) and wait
        until each is ready; the seconds it took."""
        started = time.monotonic()
        done = self.run("start")
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed:\n{done.stdout}\n{done.stderr}")
        return time.monotonic() - started

    def pid(self, node: int) -> int:
        """The PID of node ``node`` (1-based)."""
        return int((self.data_dir.parent / f"broker-{node}.pid").read_text())

    def kill(self, node: int) -> int:
        """``kill -9`` node ``node`` and wait until it is gone; its PID."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), timeout=60, what=f"kafka node {node} gone")
        return pid

    def broker(self, startup_s: float) -> Broker:
        """The cluster as the mesh's broker."""
        return Broker(
            self.bootstrap,
            f"local {self.nodes}-node KRaft cluster",
            startup_s,
            lambda: self.run("stop"),
            resume=self.start,
        )


@contextmanager
def local_cluster(data_dir: Path, *, nodes: int = 3) -> Iterator[LocalCluster]:
    """A started cluster of ``nodes`` nodes, stopped on exit."""
    cluster = LocalCluster(data_dir, nodes)
    try:
        cluster.startup_s = cluster.start()
        yield cluster
    finally:
        cluster.run("stop")
