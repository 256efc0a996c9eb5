"""The orchestrator's Alembic revisions, oldest first."""
