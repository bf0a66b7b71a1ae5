"""The instruction client's defaults and guard rails; no broker needed."""

from __future__ import annotations

import pytest

from patchbay.config import Settings
from patchbay.sdk import InstructionClient, publish_message


def test_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHBAY_RABBITMQ_URL", "amqp://me:secret@rabbit:5673/vhost")
    monkeypatch.setenv("PATCHBAY_API_KEY", "pb-from-env")
    monkeypatch.setenv("PATCHBAY_INSTRUCTIONS__QUEUE", "q.from.env")
    monkeypatch.setenv("PATCHBAY_INSTRUCTIONS__TIMEOUT_S", "7")
    client = InstructionClient()
    assert (client.url, client.queue, client.api_key, client.timeout) == (
        "amqp://me:secret@rabbit:5673/vhost",
        "q.from.env",
        "pb-from-env",
        7.0,
    )
    assert client.address == "amqp://rabbit:5673/q.from.env"  # no credentials


def test_arguments_win_and_the_url_defaults_to_a_local_rabbitmq() -> None:
    client = InstructionClient(
        queue="mine", api_key="pb-arg", timeout=3, settings=Settings(_env_file=None)
    )
    assert (client.url, client.queue, client.api_key, client.timeout) == (
        "amqp://guest:guest@localhost/",
        "mine",
        "pb-arg",
        3,
    )
    assert "guest" not in client.timeout_message(3)


async def test_publish_message_inside_an_event_loop_points_to_the_async_client() -> None:
    with pytest.raises(RuntimeError, match="InstructionClient"):
        publish_message('{"type": "USER_LIST"}')


async def test_request_before_connect_says_what_to_do() -> None:
    client = InstructionClient(settings=Settings(_env_file=None))
    with pytest.raises(RuntimeError, match="connect"):
        await client.request("{}")
