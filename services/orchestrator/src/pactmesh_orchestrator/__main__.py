"""``python -m pactmesh_orchestrator``: serve the orchestrator."""

from pactmesh_kit.app import serve

from pactmesh_orchestrator.settings import Settings


def main() -> None:
    """Run the orchestrator under uvicorn."""
    settings = Settings()
    serve("pactmesh_orchestrator.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
