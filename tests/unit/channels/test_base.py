"""What every channel sends the core: a thread past the core's length is kept apart by its hash;
what the core would refuse is an `InvalidRequest` the channel answers, not a crash."""

from __future__ import annotations

import pytest

from patchbay.channels.base import Channel, ChannelSettings
from patchbay.client import CoreClient
from patchbay.errors import InvalidRequest
from patchbay.schemas.options import MAX_TEXT
from patchbay.schemas.turns import MAX_THREAD


class Plain(Channel[ChannelSettings]):
    name = "plain"


@pytest.fixture
def channel() -> Plain:
    return Plain(ChannelSettings(), CoreClient("http://127.0.0.1:9"))


def test_a_long_thread_is_its_hash_the_same_each_time(channel: Plain) -> None:
    jid = "a" * 1000 + "@example.org"  # XMPP allows a localpart of 1,023 bytes
    first = channel._turn_body("hi", jid, [], None).thread
    assert first is not None and first.startswith("sha256:") and len(first) <= MAX_THREAD
    assert channel._turn_body("hi", jid, [], None).thread == first
    assert channel._turn_body("hi", "b" + jid[1:], [], None).thread != first
    assert channel._turn_body("hi", "x@example.org", [], None).thread == "x@example.org"


def test_what_the_core_would_refuse_is_an_invalid_request(channel: Plain) -> None:
    with pytest.raises(InvalidRequest, match="text"):
        channel._turn_body("x" * (MAX_TEXT + 1), None, [], None)
    with pytest.raises(InvalidRequest, match="reply"):
        channel._turn_body(
            "hi", None, [], None, delivery_id="d1", reply={"x": "y" * 20_000}, holder="host/plain"
        )
