"""The local launcher (``infra/run.sh``): a process that exits on its own is restarted,
loudly, and given up on after repeated quick exits (then honcho stops the mesh); honcho
waits for a service's shutdown grace before it kills anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pactmesh_harness.mesh import REPO, wait_for

SUPERVISE = REPO / "infra" / "supervise.sh"
LAUNCH = REPO / "infra" / "launch.py"


def test_a_crashing_process_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    crash = f"echo run >> {runs}; exit 3"
    started = time.monotonic()
    done = subprocess.run(
        [str(SUPERVISE), "demo", "bash", "-c", crash],
        env={**os.environ, "PACTMESH_RESTART_LIMIT": "3"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert runs.read_text().count("run") == 3
    lines = done.stderr.splitlines()
    assert (
        lines[0]
        == "supervise: demo exited with code 3; restarting in 1 s (restart 1 of at most 2 in a row)"
    )
    assert lines[1].startswith("supervise: demo exited with code 3; restarting in 2 s")
    assert lines[2] == (
        "supervise: demo exited with code 3, 3 times in a row within 30 s of starting: "
        "giving up (the mesh stops)"
    )
    assert time.monotonic() - started < 20


def test_stopping_the_process_group_stops_without_a_restart(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    service = f"trap 'echo stopped > {marker}; exit 0' TERM; while :; do sleep 0.1; done"
    errors = tmp_path / "stderr"
    with errors.open("w") as err:
        process = subprocess.Popen(
            [str(SUPERVISE), "demo", "bash", "-c", service],
            start_new_session=True,  # as honcho starts it
            stderr=err,
        )
    try:
        time.sleep(0.5)  # the service is up (nothing to poll: it prints nothing)
        os.killpg(process.pid, signal.SIGTERM)  # as honcho stops it
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert marker.read_text().strip() == "stopped"
    assert "restarting" not in errors.read_text()


def test_honcho_waits_for_a_slow_shutdown_within_the_grace(tmp_path: Path) -> None:
    marker = tmp_path / "drained"
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        f"slow: trap 'sleep 7; echo drained > {marker}; exit 0' TERM; while :; do sleep 0.1; done\n"
    )
    log = tmp_path / "honcho.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(LAUNCH), "--no-colour", "-f", str(procfile), "start"],
            env={**os.environ, "PACTMESH_SHUTDOWN_GRACE_S": "5"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "started (pid=" in log.read_text(), timeout=10, what="slow started")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert marker.read_text().strip() == "drained", "not killed after honcho's usual 5 s"
    assert "slow.1 stopped (rc=0)" in log.read_text()
