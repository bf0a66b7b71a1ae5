"""Which modules are alive: each reports in with a heartbeat, and one that stops is shown down."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from patchbay.schemas.status import Heartbeat, ModuleStatus


class StatusBoard:
    """The last heartbeat of every module since this core started."""

    def __init__(self, *, down_after_s: float) -> None:
        self._down_after_s = down_after_s
        self._beats: dict[str, tuple[float, Heartbeat]] = {}
        self._started_at = datetime.now(UTC)

    def record(self, beat: Heartbeat) -> None:
        self._beats[beat.module] = (time.monotonic(), beat)

    def modules(self, core_url: str) -> list[ModuleStatus]:
        now = time.monotonic()
        core = ModuleStatus(
            name="core",
            kind="core",
            state="up",
            url=core_url,
            pid=os.getpid(),
            started_at=self._started_at,
            last_seen_s=0.0,
        )
        others = [
            ModuleStatus(
                name=beat.module,
                kind=beat.kind,
                state="up" if now - seen <= self._down_after_s else "down",
                url=beat.url,
                pid=beat.pid,
                started_at=beat.started_at,
                last_seen_s=round(now - seen, 2),
            )
            for _name, (seen, beat) in sorted(self._beats.items())
        ]
        return [core, *others]
