"""The hitl service's HTTP surface: the reviewer API and the reviewer page."""

from pactmesh_hitl.api.page import mount_reviewer_page
from pactmesh_hitl.api.reviews import router

__all__ = ["mount_reviewer_page", "router"]
