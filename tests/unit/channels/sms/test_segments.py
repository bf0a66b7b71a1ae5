"""SMS segments: what carriers count, and message bodies Twilio joins again."""

from __future__ import annotations

import pytest

from patchbay.channels.sms.segments import is_gsm7, message_bodies, segment_count


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # two septets each
        ("€" * 81, 2),
        ("é" * 160, 1),  # in the GSM alphabet
        ("ł" * 70, 1),  # not: UCS-2
        ("ł" * 71, 2),
        ("🙂" * 35, 1),  # two UTF-16 units each
        ("🙂" * 36, 2),
    ],
)
def test_segment_count(text: str, segments: int) -> None:
    assert segment_count(text) == segments


def test_gsm7() -> None:
    assert is_gsm7("Hello, world! 100€ @ home [ok]")
    assert not is_gsm7("Zażółć")


def test_bodies_split_at_words_and_cut_past_the_most_messages() -> None:
    text = " ".join(f"w{i:03d}" for i in range(1000))  # 4,999 characters
    bodies = message_bodies(text, max_body=1600, max_messages=10)
    assert len(bodies) == 4 and " ".join(bodies) == text
    assert all(len(body) <= 1600 for body in bodies)
    cut = message_bodies(text, max_body=100, max_messages=2)
    assert len(cut) == 2 and cut[-1].endswith("…") and len(cut[-1]) <= 100
    assert message_bodies("", max_body=100) == []
