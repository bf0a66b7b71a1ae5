"""The log writer stores every call handed to it, those made together crossing as one batch."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import llm

from patchbay.core.llm.logs import HANDOFF_S, LlmLogWriter


async def _answered(prompt: str) -> llm.AsyncResponse:
    response = llm.get_async_model("echo").prompt(prompt)
    await response.text()
    return response


def _logged_prompts(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT prompt FROM turn_search"))


async def test_calls_made_together_and_apart_are_all_stored(tmp_path: Path) -> None:
    writer = LlmLogWriter(tmp_path / "logs.db", batch_size=4, flush_interval_s=0.05)
    writer.start()
    try:
        together = [await _answered(f"together {n}") for n in range(10)]
        for response in together:  # in one tick: one hand-off for all ten
            writer.submit(response)
        await asyncio.sleep(HANDOFF_S * 3)
        writer.submit(await _answered("apart"))
    finally:
        await asyncio.to_thread(writer.close)  # hands off what is pending, then waits
    expected = sorted([f"together {n}" for n in range(10)] + ["apart"])
    assert _logged_prompts(tmp_path / "logs.db") == expected
