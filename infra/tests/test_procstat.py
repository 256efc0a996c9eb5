"""The CPU accounting of ``make bench``'s scaled phase (``pactmesh_harness.procstat``):
a server's CPU with its forked processes, live or reaped, and instances summed per
service. On a fake ``/proc``, and once on the real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pactmesh_harness.procstat import (
    CLOCK_TICKS,
    alive,
    by_service,
    children,
    cpu_s,
    pid_from_file,
    tree_cpu_s,
)


def _process(
    proc: Path,
    pid: int,
    ppid: int,
    *,
    utime: int,
    stime: int,
    cutime: int = 0,
    cstime: int = 0,
    state: str = "S",
) -> None:
    """A ``/proc/<pid>/stat`` line, its command name with a space and a parenthesis as
    Postgres's backends' titles can have."""
    fields = [state, str(ppid), *["0"] * 9, str(utime), str(stime), str(cutime), str(cstime)]
    fields += ["20", "0", "1"]
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} (postgres: a (b) c) {' '.join(fields)}\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A postmaster (100) with two backends (101, 102), one of which forked (103), a
    process elsewhere (200), and a file that is not a process."""
    _process(tmp_path, 1, 0, utime=5, stime=5)
    _process(tmp_path, 100, 1, utime=10, stime=20, cutime=30, cstime=40)
    _process(tmp_path, 101, 100, utime=1, stime=2)
    _process(tmp_path, 102, 100, utime=3, stime=4, cutime=5)
    _process(tmp_path, 103, 102, utime=6, stime=0)
    _process(tmp_path, 200, 1, utime=1000, stime=1000)
    (tmp_path / "uptime").write_text("1.0 1.0\n")
    return tmp_path


def test_a_process_own_time_is_user_plus_system(proc: Path) -> None:
    assert cpu_s(100, proc) == pytest.approx(30 / CLOCK_TICKS)
    assert cpu_s(999, proc) == 0.0


def test_a_tree_counts_reaped_children_and_every_live_descendant(proc: Path) -> None:
    expected = (10 + 20 + 30 + 40) + (1 + 2) + (3 + 4 + 5) + 6
    assert children(100, proc) == [101, 102]
    assert tree_cpu_s(100, proc) == pytest.approx(expected / CLOCK_TICKS)
    assert tree_cpu_s(999, proc) == 0.0


def test_a_backend_that_exits_between_two_readings_still_counts(proc: Path) -> None:
    before = tree_cpu_s(100, proc)
    # 101 used 7 more ticks, exited and was reaped: its whole time moves to cutime/cstime.
    for entry in (proc / "101").iterdir():
        entry.unlink()
    (proc / "101").rmdir()
    (proc / "100" / "stat").unlink()
    (proc / "100").rmdir()
    _process(proc, 100, 1, utime=10, stime=20, cutime=30 + 1 + 7, cstime=40 + 2)

    assert tree_cpu_s(100, proc) - before == pytest.approx(7 / CLOCK_TICKS)


def test_instances_are_summed_per_service() -> None:
    per_instance = {
        "sandbox": 0.5,
        "intake": 1.0,
        "orchestrator": 4.0,
        "intake-2": 2.0,
        "orchestrator-2": 3.5,
        "postgres": 6.0,
    }
    assert by_service(per_instance) == {
        "sandbox": 0.5,
        "intake": 3.0,
        "orchestrator": 7.5,
        "postgres": 6.0,
    }


def test_a_pid_is_read_from_the_first_line_of_its_file(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text("4242\n/var/lib/data\n1700000000\n")
    (tmp_path / "empty.pid").write_text("")
    assert pid_from_file(tmp_path / "postmaster.pid") == 4242
    assert pid_from_file(tmp_path / "empty.pid") is None
    assert pid_from_file(tmp_path / "missing.pid") is None


def test_the_real_proc_charges_a_finished_child_to_its_parent() -> None:
    before = tree_cpu_s(os.getpid())
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", busy], check=True, timeout=60)

    assert tree_cpu_s(os.getpid()) - before >= 0.25


def test_a_zombie_or_a_missing_process_is_not_alive(proc: Path) -> None:
    _process(proc, 300, 1, utime=0, stime=0, state="Z")
    assert alive(101, proc)
    assert not alive(300, proc)
    assert not alive(999, proc)
    assert alive(os.getpid())
