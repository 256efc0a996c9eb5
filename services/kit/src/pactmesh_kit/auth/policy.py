"""The access policy: roles and scopes mapped to what a principal may do.

Loaded once per process from ``access.toml`` (packaged next to this module, or the file
``PACTMESH_ACCESS_POLICY`` names), which says only who may do what. Which tools a
workflow may use at all is not the file's to say: each workflow's definition declares
them (``pactmesh_workflows``), and the policy takes them from the registry. Every edge
asks the same object: the HTTP layer before accepting a request, the tools service
before running a tool, hitl before recording a decision.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pactmesh_contracts.envelope import Principal
from pactmesh_workflows.registry import registry
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_POLICY = Path(__file__).with_name("access.toml")

Capability = str
"""An API capability, for example ``requests:submit`` or ``reviews:read``."""


class Grant(BaseModel):
    """What one role or one scope allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    capabilities: frozenset[str] = frozenset()
    workflows: frozenset[str] = frozenset()
    tools: frozenset[str] = frozenset()
    review_actions: frozenset[str] = frozenset()


class PolicyFile(BaseModel):
    """What ``access.toml`` holds: grants per role and per scope, nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, Grant] = Field(default_factory=dict)
    scopes: dict[str, Grant] = Field(default_factory=dict)


class AccessPolicy(PolicyFile):
    """The policy file, with the tools each workflow declares."""

    workflow_tools: dict[str, frozenset[str]] = Field(default_factory=dict)
    """Workflow name to the tools it may use at all (from the workflow registry)."""

    def grants(self, principal: Principal) -> Grant:
        """The union of everything ``principal``'s roles and scopes grant."""
        parts = [self.roles[r] for r in principal.roles if r in self.roles]
        parts += [self.scopes[s] for s in principal.scopes if s in self.scopes]
        return Grant(
            capabilities=frozenset().union(*(g.capabilities for g in parts)),
            workflows=frozenset().union(*(g.workflows for g in parts)),
            tools=frozenset().union(*(g.tools for g in parts)),
            review_actions=frozenset().union(*(g.review_actions for g in parts)),
        )

    def can(self, principal: Principal, capability: Capability) -> bool:
        """True if ``principal`` holds the API ``capability``."""
        return capability in self.grants(principal).capabilities

    def startable_workflows(self, principal: Principal) -> frozenset[str]:
        """The workflows ``principal`` may start."""
        return self.grants(principal).workflows

    def may_start(self, principal: Principal, workflow: str) -> bool:
        """True if ``principal`` may start ``workflow``."""
        return workflow in self.grants(principal).workflows

    def tool_refusal(self, principal: Principal, workflow: str | None, tool: str) -> str | None:
        """Why ``workflow`` may not call ``tool`` for ``principal``; None if it may."""
        if workflow is None:
            return f"tool {tool!r} requested without naming a workflow"
        allowed = self.workflow_tools.get(workflow)
        if allowed is None:
            return f"workflow {workflow!r} has no tools in the access policy"
        if tool not in allowed:
            return f"workflow {workflow!r} may not use tool {tool!r}"
        if tool not in self.grants(principal).tools:
            return (
                f"principal {principal.subject!r} (roles {list(principal.roles)}, scopes "
                f"{list(principal.scopes)}) is not granted tool {tool!r}"
            )
        return None

    def may_review(self, principal: Principal, action: str, *, gate_role: str) -> bool:
        """True if ``principal`` holds the gate's role and may take review ``action``."""
        return gate_role in principal.roles and action in self.grants(principal).review_actions


def load_access_policy(path: Path | None = None) -> AccessPolicy:
    """Parse and validate the policy at ``path`` (the packaged default if None)."""
    return _load(path or DEFAULT_POLICY)


@lru_cache(maxsize=8)
def _load(path: Path) -> AccessPolicy:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    if "workflows" in data:
        raise ValueError(
            f"{path}: [workflows.*] tables are gone: which tools a workflow may use is "
            "declared by the workflow itself (pactmesh_workflows); keep only roles and scopes"
        )
    granted = PolicyFile.model_validate(data)
    tools = {name: d.tool_names for name, d in registry().items()}
    return AccessPolicy(roles=granted.roles, scopes=granted.scopes, workflow_tools=tools)
