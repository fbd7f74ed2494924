"""Alembic migrations of the application tables (see alembic.ini at the repository root)."""
