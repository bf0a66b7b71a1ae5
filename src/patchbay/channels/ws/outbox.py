"""The frames on their way to one client, in order, through a bounded queue and one writer task.

A burst (a finished job replayed at once) waits for room in the queue, which slows only the job
follower that sent it; a client that leaves the queue full for `send_timeout_s` is not reading and
is closed (1008), so it holds up neither the jobs nor the other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from patchbay.channels.ws.protocol import Frame, dumps
from patchbay.config import WsChannelSettings

logger = logging.getLogger(__name__)

CLOSE_GRACE_S = 5.0  # how long a close frame may wait behind a client that does not read
TOO_SLOW = 1008
TOO_SLOW_REASON = "frames left unread too long; reconnect and listen with after"


class Outbox:
    """One connection's outgoing frames: queued by many tasks, written by one."""

    def __init__(self, ws: WebSocket, settings: WsChannelSettings, finished: asyncio.Event) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(settings.send_queue_limit)
        self._timeout_s = settings.send_timeout_s
        self._finished = finished  # set when the connection should end
        self.close_with: tuple[int, str] | None = None
        self._close_sent = False

    async def send(self, frame: Frame) -> None:
        """Queue a frame, waiting while the queue is full; a client that never reads is closed."""
        if self.close_with is not None:
            return
        item = dumps(frame)
        try:
            self._queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            pass
        try:
            await asyncio.wait_for(self._queue.put(item), self._timeout_s)
        except TimeoutError:
            logger.warning("a ws client left %d frames unread; closing it", self._queue.qsize())
            self.close(TOO_SLOW, TOO_SLOW_REASON, drain=False)

    def close(self, code: int, reason: str, *, drain: bool = True) -> None:
        """Close after the frames already queued (`drain`), or right away."""
        if self.close_with is not None:
            return
        self.close_with = (code, reason)
        if drain:
            try:
                self._queue.put_nowait(None)  # the writer's cue to send the close frame
                return
            except asyncio.QueueFull:
                pass
        self._finished.set()

    async def write(self) -> None:
        """The writer task: send queued frames until the close cue or the client leaves."""
        try:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while (item := await self._queue.get()) is not None:
                    await self._ws.send_text(item)
                if self.close_with is not None:
                    self._close_sent = True
                    await self._ws.close(*self.close_with)
        finally:
            self._finished.set()

    async def close_now(self) -> None:
        """Send the close frame the writer did not get to, if the client is still there."""
        if self.close_with is None or self._close_sent:
            return
        if self._ws.application_state != WebSocketState.CONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, TimeoutError):
            await asyncio.wait_for(self._ws.close(*self.close_with), CLOSE_GRACE_S)
