"""CPU time of processes from ``/proc`` (Linux): one process, or a server and every
process it forked (Postgres's postmaster and its backends), so that a bench can charge a
database's CPU to the workload beside the services'."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pactmesh_harness.mesh import kind_of

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat(pid: int, proc: Path = PROC) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first),
    or ``None`` when the process is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int, proc: Path = PROC) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    fields = _stat(pid, proc)
    return fields is not None and fields[0] not in ("Z", "X")


def cpu_s(pid: int, proc: Path = PROC) -> float:
    """The CPU seconds ``pid`` has used itself (user + system); 0 when it is gone."""
    fields = _stat(pid, proc)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _parents(proc: Path) -> dict[int, list[int]]:
    """Every process's children, by parent PID (one pass over ``/proc``)."""
    tree: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name), proc)
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry.name))  # ppid
    return tree


def children(pid: int, proc: Path = PROC) -> list[int]:
    """The live (or not yet reaped) processes whose parent is ``pid``."""
    return sorted(_parents(proc).get(pid, []))


def tree_cpu_s(pid: int, proc: Path = PROC) -> float:
    """The CPU seconds of ``pid`` and of every process it forked, live or gone: its own
    time, its reaped children's (``cutime`` + ``cstime``, which the kernel adds when the
    parent waits for them) and, recursively, its live children's.

    The difference of two readings is what the tree used in between, backends that came
    and went included, provided the server reaps its children (Postgres's postmaster
    does). A child reaped while a reading is taken is counted once or not at all: one
    process's time at most, a rounding error over a bench phase."""
    tree = _parents(proc)

    def total(node: int) -> float:
        fields = _stat(node, proc)
        if fields is None:
            return 0.0
        own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS
        return own + sum(total(child) for child in tree.get(node, []))

    return total(pid)


def pid_from_file(path: Path) -> int | None:
    """The PID on the first line of ``path`` (``postmaster.pid``, a daemon's pidfile),
    or ``None`` when there is none."""
    try:
        first = path.read_text().splitlines()[0].strip()
    except (FileNotFoundError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def by_service(per_instance: Mapping[str, float]) -> dict[str, float]:
    """Figures of instances (``orchestrator``, ``orchestrator-2``…) summed per service
    (``orchestrator``), in the order services first appear."""
    totals: dict[str, float] = {}
    for instance, value in per_instance.items():
        totals[kind_of(instance)] = totals.get(kind_of(instance), 0.0) + value
    return totals
