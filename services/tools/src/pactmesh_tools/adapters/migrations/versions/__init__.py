"""The tools service's Alembic revisions, oldest first."""
