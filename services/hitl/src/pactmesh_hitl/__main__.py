"""``python -m pactmesh_hitl``: serve the hitl service."""

from pactmesh_kit.app import serve

from pactmesh_hitl.settings import Settings


def main() -> None:
    """Run the hitl service under uvicorn."""
    settings = Settings()
    serve("pactmesh_hitl.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
