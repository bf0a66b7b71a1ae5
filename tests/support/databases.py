"""Database URLs for the store suite: SQLite in a temp dir, and a fresh PostgreSQL database.

PostgreSQL is the one on 127.0.0.1:5432 (trust auth). Where it is missing the PostgreSQL cases
skip with the reason, except under CI (`CI` set), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import pytest

PG_DSN = os.environ.get("PATCHBAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def require_service(what: str, error: BaseException) -> None:
    message = f"{what} is not reachable ({error}); start it to run these tests"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def postgres_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"patchbay_test_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_service("PostgreSQL on 127.0.0.1:5432", exc)
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """`postgres_url` for synchronous tests."""
    manager = postgres_url()
    loop = asyncio.new_event_loop()
    try:
        url = loop.run_until_complete(manager.__aenter__())
        yield url
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()
