"""What a Telegram message asks, and where its answer goes."""

from __future__ import annotations

import pytest

from patchbay.channels.telegram.botapi import BotApiError
from patchbay.channels.telegram.channel import TelegramChannel, TelegramSettings, Where, question
from patchbay.client import CoreClient


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("/start", ""),
        (" /start ", ""),
        ("/start@patchbay_bot", ""),
        ("/start ref-42", ""),  # opened from a link with a payload
        ("/starter ideas for a garden?", "/starter ideas for a garden?"),
        ("/started yet?", "/started yet?"),
        ("what does /start do?", "what does /start do?"),
    ],
)
def test_only_the_start_command_asks_nothing(text: str, asked: str) -> None:
    assert question(text) == asked


async def test_an_answer_to_a_group_that_became_a_supergroup_goes_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = TelegramSettings.model_validate(
        {"bot_token": "1:abc", "webhook_secret": "s3cret", "max_message_chars": 5}
    )
    channel = TelegramChannel(settings, CoreClient("http://127.0.0.1:9"))
    sent: list[tuple[int, str, int | None]] = []

    async def send_message(
        chat_id: int, text: str, *, reply_to: int | None = None, topic: int | None = None
    ) -> None:
        if chat_id == -42:
            moved = BotApiError("Bad Request: group chat was upgraded to a supergroup chat")
            moved.migrated_to = -1001234
            raise moved
        sent.append((chat_id, text, reply_to))

    monkeypatch.setattr(channel.api, "send_message", send_message)
    await channel.deliver(Where(-42, message_id=7), "one two three")
    assert sent == [(-1001234, "one", None), (-1001234, "two", None), (-1001234, "three", None)]
    await channel.close()
