"""``python -m pactmesh_intake``: serve intake."""

from pactmesh_kit.app import serve

from pactmesh_intake.settings import Settings


def main() -> None:
    """Run intake under uvicorn."""
    settings = Settings()
    serve("pactmesh_intake.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
