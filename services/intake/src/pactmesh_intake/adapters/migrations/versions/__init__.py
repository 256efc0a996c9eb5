"""Intake's Alembic revisions, oldest first."""
