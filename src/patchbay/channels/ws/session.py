"""One WebSocket connection: authenticate, read the client's frames, follow its jobs.

Three kinds of task serve it: a reader for the client's frames, one follower per job it listens
to (see `follow.py`) and the outbox's writer. When the client leaves, or is closed, all of them are
cancelled; the jobs themselves keep running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from starlette.websockets import WebSocket

from patchbay.channels.ws.follow import JobFollower
from patchbay.channels.ws.outbox import CLOSE_GRACE_S, Outbox
from patchbay.channels.ws.protocol import (
    AddFrame,
    AuthFrame,
    BadFrame,
    CancelFrame,
    Frame,
    ListenFrame,
    bad,
    failed,
    parse,
)
from patchbay.client import CoreClient
from patchbay.config import WsChannelSettings
from patchbay.errors import AuthenticationFailed, PatchbayError

logger = logging.getLogger(__name__)

AUTH_FAILED = 4401
TOO_BIG = 1009
TRY_LATER = 1013
HOW_TO_AUTH = (
    'send the key as ?api_key=, as `Authorization: Bearer`, or first {"type": "auth", "api_key": …}'
)


def upgrade_key(ws: WebSocket) -> str | None:
    """The API key given with the upgrade request: `?api_key=` or `Authorization: Bearer`."""
    key = ws.query_params.get("api_key", "").strip()
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if not key and scheme.lower() == "bearer":
        key = value.strip()
    return key or None


class Session:
    """Serves one connection until the client leaves or is closed."""

    def __init__(self, ws: WebSocket, core: CoreClient, settings: WsChannelSettings) -> None:
        self._ws = ws
        self._core = core
        self._settings = settings
        self._finished = asyncio.Event()
        self._outbox = Outbox(ws, settings, self._finished)
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: JobFollower | None = None
        self.user: str | None = None

    async def serve(self) -> None:
        await self._ws.accept()
        writer = asyncio.create_task(self._outbox.write())
        reader = asyncio.create_task(self._read())
        reader.add_done_callback(self._on_reader_done)
        try:
            await self._finished.wait()
        finally:
            tasks = [reader, writer, *self._tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._outbox.close_now()
        logger.info("ws connection of %s closed", self.user or "an unauthenticated client")

    async def send(self, frame: Frame) -> None:
        await self._outbox.send(frame)

    def spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """Run `work` for this connection; it is cancelled when the connection ends."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    async def _read(self) -> None:
        jobs = await self._authenticate()
        if jobs is None:
            return
        while (text := await self._next_text()) is not None:
            try:
                frame = parse(text)
            except BadFrame as exc:
                await self.send(bad(exc))
                continue
            if isinstance(frame, AddFrame):
                self.spawn(jobs.add(frame))
            elif isinstance(frame, ListenFrame):
                jobs.listen(frame.job_id, frame.after)
            elif isinstance(frame, CancelFrame):
                self.spawn(jobs.cancel(frame.job_id))
            else:
                await self.send(failed(f"this connection is already authenticated as {self.user}"))

    async def _next_text(self) -> str | None:
        """The next text frame; None once the client left or sent a frame too big to take."""
        limit = self._settings.max_frame_bytes
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is None:
                await self.send(failed("frames are JSON text; this one is binary"))
                continue
            if len(text) > limit or len(text.encode()) > limit:
                self._outbox.close(TOO_BIG, f"frame over the {limit}-byte limit")
                return None
            return str(text)

    async def _authenticate(self) -> JobFollower | None:
        """Know the user from the upgrade's key or from a first `auth` frame; close otherwise."""
        key = upgrade_key(self._ws)
        greet = key is None
        if key is None and (key := await self._auth_frame()) is None:
            return None
        try:
            user = await self._core.me(key=key)
        except AuthenticationFailed:
            await self._refuse("that API key is not valid")
            return None
        except PatchbayError as exc:
            await self.send(failed(exc.message, retryable=exc.retryable))
            self._outbox.close(TRY_LATER if exc.retryable else AUTH_FAILED, "cannot check the key")
            return None
        self.user = user.name
        if greet:
            await self.send({"type": "resp_auth", "user": user.name})
        return JobFollower(self, self._core, key=key)

    async def _auth_frame(self) -> str | None:
        """The key from the first frame, which must be `auth`."""
        try:
            text = await asyncio.wait_for(self._next_text(), self._settings.auth_timeout_s)
        except TimeoutError:
            await self._refuse("no API key in time")
            return None
        if text is None:
            return None
        try:
            frame = parse(text)
        except BadFrame as exc:
            await self._refuse(f"authenticate first ({exc.message})")
            return None
        if not isinstance(frame, AuthFrame):
            await self._refuse(f"authenticate first, then {frame.type}")
            return None
        return frame.api_key

    async def _refuse(self, why: str) -> None:
        await self.send(failed(f"{why}: {HOW_TO_AUTH}"))
        self._outbox.close(AUTH_FAILED, "authentication required")

    def _on_reader_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("ws reader failed", exc_info=task.exception())
        if self._outbox.close_with is None:
            self._finished.set()  # the client left
        else:  # the writer sends the close frame; give it a while behind a slow client
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._finished.set)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("ws job task failed", exc_info=task.exception())
