"""The accepted requests' Alembic revisions, oldest first."""
