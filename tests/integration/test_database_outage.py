"""A database that goes away: clear retryable errors meanwhile, and service resumes by itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.databases import postgres_database
from tests.support.stack import Stack, register_models, running_stack
from tests.support.tcpproxy import TcpProxy
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration
BODY = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}


def ask(stack: Stack) -> httpx.Response:
    return httpx.post(
        stack.openai_url + "/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {stack.admin_key}"},
        timeout=30,
    )


def assert_retryable_outage(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"]


def test_sqlite_locked_by_another_process(stack: Stack) -> None:
    assert ask(stack).status_code == 200
    locker = sqlite3.connect(stack.settings.data_dir / "patchbay.db", timeout=1)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        assert_retryable_outage(ask(stack))
    finally:
        locker.rollback()
        locker.close()
    assert ask(stack).status_code == 200


@pytest.mark.timeout(120)
def test_postgresql_down_and_back(tmp_path: Path, upstream: MockUpstream) -> None:
    with postgres_database() as url:
        proxy = TcpProxy("127.0.0.1", 5432)
        proxy.start()
        try:
            host_and_db = url.split("@", 1)[1].split("/", 1)[1]
            proxied = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{host_and_db}"
            with running_stack(make_settings(tmp_path, database_url=proxied)) as stack:
                register_models(stack, upstream.base_url)
                assert ask(stack).status_code == 200
                proxy.cut()
                assert_retryable_outage(ask(stack))
                proxy.start()
                assert ask(stack).status_code == 200
        finally:
            proxy.close()
