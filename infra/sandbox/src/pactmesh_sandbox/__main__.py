"""``python -m pactmesh_sandbox``: serve the sandbox backends."""

from pactmesh_kit.app import serve

from pactmesh_sandbox.settings import Settings


def main() -> None:
    """Run the sandbox under uvicorn on ``PACTMESH_SANDBOX_PORT`` (default 8010)."""
    settings = Settings()
    serve("pactmesh_sandbox.app:create_app", settings, port=settings.port)


if __name__ == "__main__":
    main()
