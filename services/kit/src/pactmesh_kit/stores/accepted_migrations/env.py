"""Alembic's entry point for the accepted requests' revisions (run by ``MIGRATIONS.upgrade``)."""

from pactmesh_kit.stores.migrations import run_in_alembic_env

run_in_alembic_env()
