"""``python -m pactmesh_routing``: serve routing."""

from pactmesh_kit.app import serve

from pactmesh_routing.settings import Settings


def main() -> None:
    """Run routing under uvicorn."""
    settings = Settings()
    serve("pactmesh_routing.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
