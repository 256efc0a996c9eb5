"""The orchestrator's exceptions; each carries a stable code."""

from __future__ import annotations

import uuid

from pactmesh_kit.errors import PactmeshError


class OrchestratorError(PactmeshError):
    """Root of the orchestrator's exceptions."""

    code = "orchestrator_error"


class UnknownWorkflowRun(OrchestratorError, LookupError):
    """An event names a workflow run this orchestrator has no checkpoint for."""

    code = "unknown_workflow_run"


class RunNotFound(OrchestratorError):
    """No run with this id for the caller's tenant (another tenant's looks the same)."""

    code = "run_not_found"
    kind = "not_found"

    def __init__(self, workflow_id: uuid.UUID) -> None:
        super().__init__(f"no run {workflow_id}")
        self.workflow_id = workflow_id


class AnswerRefused(OrchestratorError):
    """An event that would resume a run answers nothing the run waits for (or answers it
    from someone the run may not hear from): audited and dead-lettered, never run."""

    code = "answer_refused"
    kind = "forbidden"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
