"""The audit store's Alembic revisions, oldest first."""
