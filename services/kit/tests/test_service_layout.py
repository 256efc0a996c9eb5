"""Every service has the layout the kit's app builder assumes (shared/STYLE.md): an app
factory, settings, handlers, a runtime, ``api/deps.py`` with one router module per
resource, ``domain/`` free of FastStream and FastAPI, and ``adapters/``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES_DIR = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "routing", "orchestrator", "tools", "hitl", "delivery")
HTTP_SERVICES = ("intake", "orchestrator", "tools", "hitl", "delivery")
"""Services with routes of their own (routing has only the kit's health and AsyncAPI)."""
EDGE_PACKAGES = ("faststream", "fastapi", "starlette", "aiokafka", "uvicorn")


def _package(service: str) -> Path:
    return SERVICES_DIR / service / "src" / f"pactmesh_{service}"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_has_the_shared_layout(service: str) -> None:
    package = _package(service)
    for module in ("app.py", "settings.py", "handlers.py", "runtime.py", "domain", "adapters"):
        assert (package / module).exists(), f"{service} has no {module}"
    if service in HTTP_SERVICES:
        assert (package / "api" / "deps.py").exists()
        assert list((package / "api" / "routes").glob("[!_]*.py")), f"{service}: no routes"


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_imports_neither_faststream_nor_fastapi(service: str) -> None:
    for path in sorted((_package(service) / "domain").rglob("*.py")):
        edges = {m for m in _imports(path) if m.split(".")[0] in EDGE_PACKAGES}
        kit_edges = {
            m for m in _imports(path) if m.startswith(("pactmesh_kit.kafka", "pactmesh_kit.app"))
        }
        assert not edges | kit_edges, (
            f"{path.relative_to(SERVICES_DIR)} imports {edges | kit_edges}"
        )
