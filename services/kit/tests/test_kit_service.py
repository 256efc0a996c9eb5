"""What create_service_app gives every service: auth state and encodable 422s."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.testclient import TestClient
from pactmesh_kit.auth.http import Authenticator
from pactmesh_kit.kafka import make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.settings import KitSettings
from pydantic import BaseModel


class Body(BaseModel):
    count: int


def _app(tmp_path: Path) -> TestClient:
    settings = KitSettings(data_dir=tmp_path)
    router = APIRouter()

    @router.post("/things")
    async def things(body: Body) -> dict[str, int]:
        return {"count": body.count}

    app = create_service_app(
        settings=settings,
        broker=make_broker(settings, tracer_provider=None),
        tracer_provider=None,
        title="t",
        description="d",
        routers=(router,),
    )
    assert isinstance(app.state.authenticator, Authenticator)
    return TestClient(app)  # no lifespan: the broker is never started


def test_a_field_error_echoing_an_unpaired_surrogate_is_a_422_not_a_500(tmp_path: Path) -> None:
    client = _app(tmp_path)
    response = client.post(
        "/things",
        content=b'{"count": "\\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "count"]
    assert error["input"] == "\ud800"


def test_ordinary_field_errors_keep_fastapis_shape(tmp_path: Path) -> None:
    response = _app(tmp_path).post("/things", json={"count": "many"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "int_parsing"
