"""The committed JSON Schema snapshots match the models, and the check can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from pactmesh_contracts import schemas


def test_committed_schemas_are_fresh() -> None:
    """Fails after a contract change: run ``make schemas`` and commit the result."""
    assert schemas.SCHEMA_DIR.is_dir(), schemas.SCHEMA_DIR
    assert schemas.stale() == []


def test_every_event_type_and_the_registry_have_a_snapshot() -> None:
    names = set(schemas.render())
    assert "topics.json" in names
    assert {"request.accepted.v1.json", "tool.call.failed.v1.json", "dead.letter.v1.json"} <= names
    assert "workflow.result.v1.json" in names


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []
    return tmp_path


def test_stale_names_a_modified_file(snapshot_dir: Path) -> None:
    target = snapshot_dir / "request.routed.v1.json"
    target.write_text(target.read_text().replace('"confidence"', '"certainty"'))
    assert schemas.stale(snapshot_dir) == ["request.routed.v1.json"]


def test_stale_names_a_missing_file(snapshot_dir: Path) -> None:
    (snapshot_dir / "topics.json").unlink()
    assert schemas.stale(snapshot_dir) == ["topics.json"]


def test_stale_names_a_file_no_model_produces(snapshot_dir: Path) -> None:
    (snapshot_dir / "request.accepted.v0.json").write_text("{}\n")
    assert schemas.stale(snapshot_dir) == ["request.accepted.v0.json"]


def test_stale_reports_everything_for_a_missing_directory(tmp_path: Path) -> None:
    assert schemas.stale(tmp_path / "nowhere") == sorted(schemas.render())


def test_check_command_exit_code_follows_staleness(snapshot_dir: Path) -> None:
    assert schemas.main(["--check", "--dir", str(snapshot_dir)]) == 0
    (snapshot_dir / "audit.recorded.v1.json").write_text("{}\n")
    assert schemas.main(["--check", "--dir", str(snapshot_dir)]) == 1


def test_write_removes_snapshots_no_model_produces(snapshot_dir: Path) -> None:
    (snapshot_dir / "gone.v1.json").write_text("{}\n")
    schemas.write(snapshot_dir)
    assert not (snapshot_dir / "gone.v1.json").exists()
    assert schemas.stale(snapshot_dir) == []
