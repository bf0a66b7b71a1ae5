"""Writes every model call to an `llm` logs database in `llm`'s own schema, off the request path.

The core turns each finished response into a small JSON-safe record (`llm`'s own `to_dict()` plus
the timing and conversation it leaves out) and hands the records of the last few milliseconds
together to a writer process, which rebuilds the responses and stores them in batches with `llm`'s
`LogStore`, so `llm logs -d PATH` lists them exactly as it lists its own. A process rather than a
thread: storing a call costs milliseconds of CPU, and in a thread that time would be taken from
the event loop through the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import llm
from pydantic import ConfigDict

from patchbay import heap

logger = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0  # how often an idle writer checks that the core is still there
NICENESS = 10  # the writer's scheduling priority below the core's
# Records made within this long of each other cross to the writer together: one pickling and one
# pipe write for them all (under load, a queue put per call cost the core more than the record).
HANDOFF_S = 0.02


def log_record(response: Any) -> dict[str, Any]:
    """What the writer needs to store one finished `llm.AsyncResponse`."""
    started = response._start_utcnow
    return {
        "response": response.to_dict(),
        "conversation_id": response.conversation.id if response.conversation else None,
        "duration_ms": int(((response._end or 0) - (response._start or 0)) * 1000),
        "datetime_utc": started.isoformat() if started else None,
        "response_json": response.response_json,
        "resolved_model": response.resolved_model,
    }


class LlmLogWriter:
    """The queue to the writer process, and the process itself."""

    def __init__(self, path: Path, *, batch_size: int, flush_interval_s: float) -> None:
        self.path = path
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._context = multiprocessing.get_context("spawn")
        self._queue: Any = None
        self._process: Any = None
        self._pending: list[dict[str, Any]] = []
        # `close` runs in a worker thread (it waits for the process) while the loop's timer may
        # hand off at the same moment: each list goes to the writer once, and before the end.
        self._handing = threading.Lock()
        self._ended = False  # the writer was told to stop

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue = self._context.Queue()
        self._ended = False
        self._process = self._context.Process(
            target=write_forever,
            args=(str(self.path), self._queue, self._batch_size, self._interval),
            name="patchbay-llm-log",
            daemon=True,
        )
        self._process.start()

    def submit(self, response: Any) -> None:
        """Queue a finished `llm.AsyncResponse`; never blocks."""
        if self._queue is None:
            return
        self._pending.append(log_record(response))
        if len(self._pending) > 1:
            return  # a hand-off is due already
        try:
            asyncio.get_running_loop().call_later(HANDOFF_S, self._hand_off)
        except RuntimeError:  # no event loop here: at once
            self._hand_off()

    def _hand_off(self, *, last: bool = False) -> None:
        """Send the pending records to the writer; `last`: then the end, and no more after it."""
        with self._handing:
            if self._queue is None or self._ended:
                return
            if self._pending:
                records, self._pending = self._pending, []
                self._queue.put(records)
            if last:
                self._queue.put(None)
                self._ended = True

    def close(self, timeout_s: float = 10.0) -> None:
        """Store what is queued, then stop the writer."""
        if self._process is None:
            return
        self._hand_off(last=True)
        self._process.join(timeout_s)
        if self._process.is_alive():
            logger.warning("the llm log writer did not finish in %.0fs; stopping it", timeout_s)
            self._process.kill()
        self._queue.close()
        self._queue.join_thread()
        self._process = None


class _LoggedModel(llm.Model):
    """Stands in for the model that answered, so a logged response can be rebuilt anywhere."""

    class Options(llm.Options):
        model_config = ConfigDict(extra="allow")

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def execute(self, *_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError("a logged response is never executed again")


def rebuild(record: dict[str, Any]) -> llm.Response:
    """The `llm.Response` a record describes, with its timing and conversation."""
    model = _LoggedModel(record["response"]["model"])
    response = llm.Response.from_dict(record["response"], model=model)
    response._start, response._end = 0.0, record["duration_ms"] / 1000
    if record["datetime_utc"]:
        response._start_utcnow = datetime.fromisoformat(record["datetime_utc"])
    response.response_json = record["response_json"]
    if record["resolved_model"]:
        response.set_resolved_model(record["resolved_model"])
    if record["conversation_id"]:
        response.conversation = llm.Conversation(model=model, id=record["conversation_id"])
    return response


def write_forever(path: str, records: Any, batch_size: int, interval_s: float) -> None:
    """The writer process: store the records (they arrive in lists) in batches until it receives
    None (or its parent is gone and the queue is empty).

    It ignores SIGTERM and SIGINT: supervisord signals the module's whole process group, and the
    records still queued would be lost; the core tells it to stop once it has queued the last.
    """
    import signal

    from llm.logs import LogStore

    from patchbay.core.llm.schema_cache import SchemaCachedDatabase

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Answers first: under load the writer yields the CPU to the processes serving requests and
    # catches up when they idle (the records wait in the queue, in order).
    os.nice(NICENESS)
    db = SchemaCachedDatabase(path)
    db.execute("PRAGMA journal_mode=WAL")
    # A crash of the machine may lose the last batches but never corrupts the file (WAL).
    db.execute("PRAGMA synchronous=NORMAL")
    store = LogStore(db)
    heap.settle()
    stopping = False
    while not stopping:
        batch, stopping = _take_batch(records, batch_size, interval_s)
        for attempt in (1, 2):
            try:
                with db.conn:
                    # One transaction for the batch: llm's `LogStore` commits each call on its
                    # own unless a transaction is already open.
                    db.conn.execute("BEGIN")
                    for record in batch:
                        store.log(rebuild(record))
                break
            except Exception:  # losing a log batch must not stop the writer
                if attempt == 1:
                    db.forget_schema()  # another program may have changed it: look again, once
                    continue
                logger.exception("could not write %d calls to %s", len(batch), path)
    db.close()


def _take_batch(records: Any, batch_size: int, interval_s: float) -> tuple[list[Any], bool]:
    while True:
        try:
            first = records.get(timeout=PARENT_CHECK_S)
            break
        except queue.Empty:
            parent = multiprocessing.parent_process()
            if parent is not None and not parent.is_alive():
                return [], True  # the core died without saying so, and nothing is left
    if first is None:
        return [], True
    batch = list(first)
    deadline = time.monotonic() + interval_s
    while len(batch) < batch_size:
        try:
            more = records.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if more is None:
            return batch, True
        batch.extend(more)
    return batch, False
