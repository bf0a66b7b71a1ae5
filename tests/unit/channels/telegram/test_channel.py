"""What a Telegram message asks."""

from __future__ import annotations

import pytest

from patchbay.channels.telegram.channel import question


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
