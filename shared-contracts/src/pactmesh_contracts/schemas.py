"""JSON Schema snapshots of every event type, exported from the models.

``pactmesh-schemas`` writes them to ``shared-contracts/schemas``; ``--check`` exits
non-zero when the committed files differ from what the models produce now.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from pactmesh_contracts.topics import MESH_TOPICS, RESULTS

DOCUMENTED = (*MESH_TOPICS, RESULTS)
"""Every topic, the result topics as their pattern (one per workflow, named at run time)."""

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def _event_types() -> dict[str, Any]:
    """Each event's tag mapped to the record type that travels on the wire."""
    from pactmesh_contracts.envelope import Envelope

    found: dict[str, Any] = {}
    for topic in DOCUMENTED:
        for event in topic.events:
            tag = event.model_fields["type"].default
            found[tag] = Envelope[event] if topic.enveloped else event  # type: ignore[valid-type]
    return found


def render() -> dict[str, str]:
    """File name to JSON text, for every schema snapshot."""
    files: dict[str, str] = {}
    for tag, record_type in sorted(_event_types().items()):
        schema = TypeAdapter(record_type).json_schema(mode="validation")
        schema["$id"] = f"https://pactmesh.dev/schemas/{tag}.json"
        schema["title"] = tag
        files[f"{tag}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    registry = {
        topic.name: {
            "description": topic.description,
            "partitions": topic.partitions,
            "events": sorted(e.model_fields["type"].default for e in topic.events),
        }
        for topic in DOCUMENTED
    }
    files["topics.json"] = json.dumps(registry, indent=2, sort_keys=True) + "\n"
    return files


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of snapshot files that are missing, different, or no longer produced."""
    expected = render()
    present = {p.name for p in directory.glob("*.json")} if directory.exists() else set()
    wrong = [
        name
        for name, text in expected.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    return sorted(wrong + sorted(present - expected.keys()))


def write(directory: Path = SCHEMA_DIR) -> None:
    """Replace the snapshots in ``directory`` with freshly rendered ones."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = render()
    for old in directory.glob("*.json"):
        if old.name not in expected:
            old.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pactmesh-schemas``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if snapshots are stale")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR)
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.dir)
        if names:
            print("stale schema snapshots (run `make schemas`):", *names, sep="\n  ")
            return 1
        return 0
    write(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
