"""The procurement policy."""

from fastapi import APIRouter

from pactmesh_sandbox.catalog import check_policy
from pactmesh_sandbox.models import PolicyCheck, PolicyCheckRequest

router = APIRouter(prefix="/procurement", tags=["procurement"])


@router.post("/check")
async def check(request: PolicyCheckRequest) -> PolicyCheck:
    """What a purchase breaks in the procurement policy."""
    return check_policy(request)
