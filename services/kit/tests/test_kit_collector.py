"""A service's garbage collector: its thresholds from the settings, and start-up's
objects frozen out of later collections once it is ready (``pactmesh_kit.collector``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pactmesh_kit.collector import DEFAULT_THRESHOLDS
from pactmesh_kit.settings import KitSettings
from pydantic import ValidationError


def test_services_collect_less_often_than_cpython_by_default() -> None:
    assert KitSettings().gc_thresholds == DEFAULT_THRESHOLDS == (100_000, 50, 100)


def test_the_thresholds_are_read_as_the_environment_writes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACTMESH_GC_THRESHOLDS", "700, 10,10")
    assert KitSettings().gc_thresholds == (700, 10, 10)


@pytest.mark.parametrize("value", ["0,10,10", "700,-1,10", "700,10", "many"])
def test_thresholds_that_would_stop_or_confuse_the_collector_are_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PACTMESH_GC_THRESHOLDS", value)
    with pytest.raises(ValidationError, match="PACTMESH_GC_THRESHOLDS"):
        KitSettings()


def _in_a_fresh_process(code: str) -> str:
    """Run ``code`` in a new interpreter (freezing is for the whole process: never this
    test process's) and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_a_service_process_freezes_what_start_up_created_once_ready() -> None:
    printed = _in_a_fresh_process(
        """
        import gc
        from pactmesh_kit import collector

        collector.configure((1234, 5, 6))
        print(gc.get_threshold())
        made_at_start_up = [{"n": i} for i in range(1000)]
        frozen = collector.ready()
        print(frozen > 1000, gc.get_freeze_count() == frozen)
        # Frozen objects are no longer walked by collections; later ones are.
        gc.collect()
        print(len(gc.get_objects(generation=2)) < frozen)
        """
    )
    assert printed.splitlines() == ["(1234, 5, 6)", "True True", "True"]


def test_a_process_that_is_not_a_service_is_left_alone() -> None:
    printed = _in_a_fresh_process(
        """
        import gc
        from pactmesh_kit import collector

        before = gc.get_threshold()
        print(collector.ready(), gc.get_freeze_count(), gc.get_threshold() == before)
        """
    )
    assert printed == "0 0 True"
