"""``python -m pactmesh_intake``: serve intake."""

from pactmesh_intake.settings import Settings
from pactmesh_kit.service import serve


def main() -> None:
    """Run intake under uvicorn."""
    settings = Settings()
    serve("pactmesh_intake.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
