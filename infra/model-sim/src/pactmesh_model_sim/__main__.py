"""``python -m pactmesh_model_sim``: serve the simulator."""

from __future__ import annotations

import logging

import uvicorn

from pactmesh_model_sim.app import create_app
from pactmesh_model_sim.settings import Settings


def main() -> None:
    """Run the simulator under uvicorn on ``PACTMESH_MODEL_SIM_PORT`` (default 8020)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s"
    )
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
