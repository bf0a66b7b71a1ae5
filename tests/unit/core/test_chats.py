"""The prefix hash identifies a conversation exactly: same messages, same hash; any change, another."""

from __future__ import annotations

from patchbay.core.chats import chain_hash


def chain(messages: list[tuple[str, str]]) -> str | None:
    digest = None
    for role, content in messages:
        digest = chain_hash(digest, role, content)
    return digest


def test_same_conversation_same_hash() -> None:
    convo = [("system", "s"), ("user", "u"), ("assistant", "a")]
    assert chain(convo) == chain(list(convo))


def test_role_content_and_order_all_count() -> None:
    base = chain([("user", "a"), ("assistant", "b")])
    assert base != chain([("assistant", "a"), ("user", "b")])
    assert base != chain([("user", "a"), ("assistant", "c")])
    assert base != chain([("user", "ab")])
    assert chain([("user", "a\x1fassistant\x1fb")]) != chain([("user", "a"), ("assistant", "b")])
