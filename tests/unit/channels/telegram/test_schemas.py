"""Updates as Telegram sends them, the settings' checks, and which files a message carries."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import SecretStr, ValidationError

from patchbay.channels.telegram.botapi import BotApi
from patchbay.channels.telegram.channel import TelegramSettings
from patchbay.channels.telegram.files import fetch_files, wanted_files
from patchbay.channels.telegram.schemas import Message, Update
from patchbay.errors import PayloadTooLarge


def message(**fields: Any) -> Message:
    base = {"message_id": 1, "from": {"id": 7, "first_name": "Ann"}, "chat": {"id": 7}}
    return Message.model_validate(base | fields)


def test_an_update_reads_the_sender_and_ignores_unknown_fields() -> None:
    update = Update.model_validate(
        {
            "update_id": 5,
            "message": {
                "message_id": 1,
                "from": {"id": 7, "is_bot": False, "first_name": "Ann", "last_name": "Lee"},
                "chat": {"id": -100, "type": "group"},
                "text": "hi",
                "entities": [{"type": "bold", "offset": 0, "length": 2}],
            },
            "future_field": {},
        }
    )
    assert update.message is not None and update.message.sender is not None
    assert update.message.sender.display_name == "Ann Lee"
    assert update.message.chat.id == -100


@pytest.mark.parametrize(
    ("user", "name"),
    [
        ({"id": 1, "first_name": "Ann"}, "Ann"),
        ({"id": 1, "first_name": "", "username": "ann_l"}, "ann_l"),
        ({"id": 1, "first_name": ""}, None),
    ],
)
def test_display_names(user: dict[str, Any], name: str | None) -> None:
    sender = message(**{"from": user}).sender
    assert sender is not None and sender.display_name == name


def settings(**extra: Any) -> TelegramSettings:
    return TelegramSettings.model_validate({"bot_token": "1:a", "webhook_secret": "ok"} | extra)


@pytest.mark.parametrize("secret", ["", "has space", "x" * 257, "ünïcode"])
def test_the_webhook_secret_must_be_one_telegram_accepts(secret: str) -> None:
    with pytest.raises(ValidationError, match="webhook_secret"):
        settings(webhook_secret=secret)


def test_the_defaults() -> None:
    own = settings()
    assert own.policy == "pairing" and own.port == 8095
    assert own.max_message_chars == 4096 and own.api_base == "https://api.telegram.org"
    with pytest.raises(ValidationError):
        settings(max_message_chars=5000)


def test_of_a_photo_the_largest_size_under_the_limit_is_wanted() -> None:
    sizes = [
        {"file_id": "s", "width": 90, "height": 90, "file_size": 1_000},
        {"file_id": "m", "width": 320, "height": 320, "file_size": 20_000},
        {"file_id": "l", "width": 1280, "height": 1280, "file_size": 200_000},
    ]
    (photo,) = wanted_files(message(photo=sizes), max_bytes=50_000)
    assert photo.file_id == "m" and photo.media_type == "image/jpeg"


def test_documents_voice_and_audio_keep_their_types() -> None:
    wanted = wanted_files(
        message(
            document={"file_id": "d", "mime_type": "application/pdf", "file_name": "a.pdf"},
            voice={"file_id": "v"},
        ),
        max_bytes=10,
    )
    assert [(w.media_type, w.filename) for w in wanted] == [
        ("application/pdf", "a.pdf"),
        ("audio/ogg", "voice.ogg"),
    ]


async def test_a_file_too_large_is_refused_before_any_download() -> None:
    api = cast(BotApi, object())  # any call on it would fail
    big = message(document={"file_id": "d", "file_size": 11})
    with pytest.raises(PayloadTooLarge, match="too large"):
        await fetch_files(api, big, max_bytes=10)


def test_the_secret_stays_secret() -> None:
    own = settings(bot_token="1:very-secret")
    assert "very-secret" not in repr(own)
    assert isinstance(own.bot_token, SecretStr)
