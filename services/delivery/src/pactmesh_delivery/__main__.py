"""``python -m pactmesh_delivery``: serve the delivery service."""

from pactmesh_kit.app import serve

from pactmesh_delivery.settings import Settings


def main() -> None:
    """Run the delivery service under uvicorn."""
    settings = Settings()
    serve("pactmesh_delivery.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
