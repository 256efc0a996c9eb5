"""hitl's Alembic revisions, oldest first."""
