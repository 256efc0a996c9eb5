"""The definitions and the registry need neither LangGraph nor the reasoning package:
every service reads the registry, and only the orchestrator installs the graphs."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from pactmesh_workflows.registry import registry
workflows = registry()
assert len(workflows) >= 5 and workflows.tools and workflows.fields
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {
    "langgraph", "langchain_core", "langchain", "pactmesh_reasoning", "numpy", "tokenizers"
})
print(",".join(heavy))
"""


def test_reading_the_registry_imports_no_graph_or_model_code() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert probe.stdout.strip() == "", probe.stdout
