"""The instruction channel (seed 003): instructions arrive on a RabbitMQ queue, answers leave by `reply_to`.

This module holds what the consumer, the SDK and the supervisor share, and imports nothing heavy.
"""

from __future__ import annotations

from urllib.parse import urlsplit

API_KEY_HEADER = "api_key"  # the AMQP header that carries the sender's patchbay API key
DEFAULT_URL = "amqp://guest:guest@localhost/"  # RabbitMQ's own default, as the seed assumes


def address(url: str, queue: str) -> str:
    """`amqp://host:port/<queue>`: where the channel listens, fit to show or log (no credentials)."""
    parts = urlsplit(url)
    scheme = parts.scheme or "amqp"
    port = parts.port or (5671 if scheme == "amqps" else 5672)
    host = parts.hostname or "localhost"
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/{queue}"
