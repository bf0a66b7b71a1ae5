"""How long answers fit SMS: bodies of up to 1,600 characters (Twilio splits each into segments
the phone joins again) and the segment count, which is what carriers limit and bill."""

from __future__ import annotations

import math
import re

from patchbay.channels.base import chunks

# GSM 03.38: texts of these characters go 160 to a segment (153 when split); any other
# character makes the whole text UCS-2, 70 to a segment (67 when split).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€")  # two septets each


def is_gsm7(text: str) -> bool:
    return all(char in GSM7 or char in GSM7_EXTENDED for char in text)


def segment_count(text: str, *, segment_length: int = 153) -> int:
    """How many segments `text` takes as one message (`segment_length`: a split GSM segment)."""
    if is_gsm7(text):
        size = len(text) + sum(char in GSM7_EXTENDED for char in text)
        single, split = 160, segment_length
    else:
        size = len(text.encode("utf-16-le")) // 2
        single, split = 70, 67
    return 1 if size <= single else math.ceil(size / split)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot hold (most C0 controls)."""
    return _NOT_XML.sub("", text)


def message_bodies(text: str, *, max_body: int = 1600, max_messages: int = 10) -> list[str]:
    """`text` as message bodies of at most `max_body` characters; past `max_messages`, cut.
    Control characters XML cannot hold (TwiML is XML) are left out."""
    bodies = chunks(xml_safe(text), max_body)
    if len(bodies) > max_messages:
        bodies = bodies[:max_messages]
        bodies[-1] = bodies[-1][: max_body - 1].rstrip() + "…"
    return bodies
