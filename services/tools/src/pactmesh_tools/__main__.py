"""``python -m pactmesh_tools``: serve the tools service."""

import logging

from pactmesh_kit.app import serve

from pactmesh_tools.settings import Settings


def main() -> None:
    """Run the tools service under uvicorn."""
    settings = Settings()
    # httpx logs every request at INFO; the client spans already record each one.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    serve("pactmesh_tools.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
