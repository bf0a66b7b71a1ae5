"""Persistence: SQLAlchemy 2 Core over SQLite (embedded default) or PostgreSQL, with Alembic migrations."""
