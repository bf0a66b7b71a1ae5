"""Recent answers, kept so that an instruction RabbitMQ delivers again does not run twice.

An acknowledgement is never confirmed in AMQP 0-9-1: when the connection drops around it (a broker
restart), RabbitMQ delivers the instruction again. The consumer then sends the answer it already
has (or awaits the one being computed) instead of running the instruction a second time, where a
second USER_CREATE would fail and a second generation would cost a model call. The memory is this
process's own and bounded: a consumer that restarts forgets, and the instruction runs again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from patchbay.channels.instructions import API_KEY_HEADER

Answer = tuple[int, bytes]  # the core's HTTP status and JSON envelope


def fingerprint(message: AbstractIncomingMessage) -> bytes | None:
    """Who asked what: reply queue, correlation id, key and body; None without a correlation id."""
    if not message.correlation_id:
        return None
    digest = hashlib.blake2b(digest_size=16)
    key = (message.headers or {}).get(API_KEY_HEADER)
    for part in (message.reply_to or "", message.correlation_id, repr(key)):
        digest.update(part.encode() + b"\0")
    digest.update(message.body)
    return digest.digest()


class RecentAnswers:
    """Answers being computed, and the last `limit` sent (`max_bytes` in all), by fingerprint.

    Server errors (5xx) are not kept: the instruction may not have run, so it may run again.
    """

    def __init__(self, *, limit: int = 4096, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._running: dict[bytes, asyncio.Future[Answer]] = {}
        self._sent: OrderedDict[bytes, Answer] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._sent)

    async def once(
        self, message: AbstractIncomingMessage, compute: Callable[[], Awaitable[Answer]]
    ) -> tuple[Answer, bool]:
        """The message's answer, and whether it is the earlier one of a message delivered again."""
        key = fingerprint(message)
        if key is None:
            return await compute(), False
        if message.redelivered:
            if key in self._sent:
                return self._sent[key], True
            if key in self._running:
                return await asyncio.shield(self._running[key]), True
        running: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._running[key] = running
        try:
            answer = await compute()
        except BaseException:
            running.cancel()
            raise
        finally:
            if self._running.get(key) is running:
                del self._running[key]
        running.set_result(answer)
        self._keep(key, answer)
        return answer, False

    def _keep(self, key: bytes, answer: Answer) -> None:
        status, body = answer
        if status >= 500 or len(body) > self.max_bytes:
            return
        if key in self._sent:
            self._bytes -= len(self._sent.pop(key)[1])
        self._sent[key] = answer
        self._bytes += len(body)
        while len(self._sent) > self.limit or self._bytes > self.max_bytes:
            self._bytes -= len(self._sent.popitem(last=False)[1][1])
