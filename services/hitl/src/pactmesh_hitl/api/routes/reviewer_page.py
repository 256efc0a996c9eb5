"""``/reviewer``: a small page for people to work the review queue in a browser.

Plain HTML, CSS and JavaScript shipped inside the package: no build step and nothing
fetched from elsewhere. The page itself is public (it holds no data); it calls the
same ``/v1/reviews`` API with the bearer token the reviewer pastes (kept in the tab's
sessionStorage only).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/reviewer/static"
# The page runs only its own script and never talks to another origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["reviewer page"])


def _page() -> str:
    return resources.files("pactmesh_hitl").joinpath("static", "reviewer.html").read_text()


_PAGE = _page()


@router.get("/reviewer", response_class=HTMLResponse, include_in_schema=False)
async def reviewer_page() -> HTMLResponse:
    """The page (public: it holds no data, its API calls carry the reviewer's token)."""
    return HTMLResponse(
        _PAGE,
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def mount_static(app: FastAPI) -> None:
    """Serve the page's script and styles under ``/reviewer/static`` (public files)."""
    app.mount(
        STATIC_URL,
        StaticFiles(packages=[("pactmesh_hitl", "static")]),
        name="reviewer-static",
    )
