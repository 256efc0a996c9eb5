"""Write deploy/kubernetes/policy.yaml from the packaged policies (access.toml, gates.toml).

The ConfigMap ships equal to the packaged defaults (infra/tests/test_deployment.py checks
it); run ``uv run python deploy/render_policy.py`` after changing either file.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "deploy" / "kubernetes" / "policy.yaml"
POLICIES = {
    "access.toml": REPO / "services/kit/src/pactmesh_kit/auth/access.toml",
    "gates.toml": REPO / "workflows/src/pactmesh_workflows/gates.toml",
}
HEADER = """\
# The policies, mounted at /etc/pactmesh/policy: who may do what (access.toml, every
# service) and the approval gates (gates.toml, the orchestrator). Shipped equal to the
# packaged defaults (a test checks it; deploy/render_policy.py writes this file from
# them); edit them here for your deployment.
apiVersion: v1
kind: ConfigMap
metadata:
  name: pactmesh-policy
  labels:
    app.kubernetes.io/part-of: pactmesh
data:
"""


def render() -> str:
    """The ConfigMap holding the packaged policies, as YAML block scalars."""
    parts = [HEADER]
    for name, path in POLICIES.items():
        body = "".join(
            f"    {line}" if line.strip() else "\n" for line in path.read_text().splitlines(True)
        )
        parts.append(f"  {name}: |\n{body}")
    return "".join(parts)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(REPO)}")
