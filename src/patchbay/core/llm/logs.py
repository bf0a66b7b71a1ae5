"""Writes every model call to an `llm` logs database in `llm`'s own schema, off the request path.

Calls are queued and a background thread stores them in batches, one transaction per batch, with
`llm`'s own `LogStore`, so `llm logs -d PATH` lists them exactly as it lists its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import sqlite_utils
from llm.logs import LogStore

logger = logging.getLogger(__name__)

_STOP = object()


class LlmLogWriter:
    """A queue of finished `llm` responses and the thread that stores them."""

    def __init__(self, path: Path, *, batch_size: int, flush_interval_s: float) -> None:
        self.path = path
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._written = 0
        self._flushed = threading.Condition()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="llm-log-writer", daemon=True)
        self._thread.start()

    def submit(self, response: Any) -> None:
        """Queue a finished `llm.AsyncResponse`; never blocks."""
        self._queue.put(response)

    def close(self, timeout_s: float = 10.0) -> None:
        """Store what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    def wait_written(self, count: int, timeout_s: float) -> bool:
        """Block until `count` responses have been stored in total (for tests and shutdown)."""
        with self._flushed:
            return self._flushed.wait_for(lambda: self._written >= count, timeout_s)

    def _run(self) -> None:
        db = sqlite_utils.Database(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        store = LogStore(db)
        stopping = False
        while not stopping:
            batch, stopping = self._take_batch()
            if batch:
                self._write(db, store, batch)
        db.close()

    def _take_batch(self) -> tuple[list[Any], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._interval
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, db: sqlite_utils.Database, store: LogStore, batch: list[Any]) -> None:
        try:
            with db.conn:
                for response in batch:
                    store.log(response._to_sync_response())
        except Exception:
            logger.exception("could not write %d calls to %s", len(batch), self.path)
        with self._flushed:
            self._written += len(batch)
            self._flushed.notify_all()
