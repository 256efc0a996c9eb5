"""The delivery service's Alembic revisions, oldest first."""
