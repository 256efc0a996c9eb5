"""``python -m pactmesh_tools``: serve the tools service."""

from pactmesh_kit.service import serve

from pactmesh_tools.settings import Settings


def main() -> None:
    """Run the tools service under uvicorn."""
    settings = Settings()
    serve("pactmesh_tools.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
