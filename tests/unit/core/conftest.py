"""A started hub on SQLite in `tmp_path`, with the llm-echo model as the default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from patchbay.core.hub import Hub
from tests.conftest import make_settings
from tests.contract.test_store import add_echo


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    running = Hub(make_settings(tmp_path))
    await running.prepare()
    await running.start()
    try:
        await add_echo(running)
        yield running
    finally:
        await running.close()
