"""Blocking work in a child process that can be stopped.

A capability's timeout cannot stop a thread: a conversion that never ends (a crafted PDF can keep a
parser busy for hours) went on after its caller had been told it timed out, holding the helper's
one slot, so every later file waited behind it. `Isolated` runs an object's methods in a child
process of its own, one call at a time; a call that is cancelled (its timeout, its caller gone)
kills the child and starts a new one. The object is made in the child, once, by a
factory that pickles (a class and its options), so what it loads (parsers, models) stays loaded
between calls. Arguments and results cross by pickle, and so do patchbay's errors; any other
exception crosses as a `CapabilityFailed` naming it (its traceback in the child's log), as
unpickling it would load its library (markitdown's: 100 MB) here as well. The child is this
interpreter started afresh, not multiprocessing's spawn, which would run the parent's main script
again in it (the CLI: 17 MB) and start a resource tracker process (12 MB) nothing here needs.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

import anyio
import anyio.to_thread

from patchbay.errors import PatchbayError
from patchbay.helpers.sdk import CapabilityFailed
from patchbay.parent import end_with_parent

logger = logging.getLogger(__name__)

STOP_WAIT_S = 5.0  # how long a killed child may take to be gone
CHILD = "from patchbay.helpers.isolated import _child; _child()"  # its one argument: its pipe


class CouldNotStart(CapabilityFailed):
    """The child could not make its object; it says so to its first call, then ends."""


class Isolated:
    def __init__(self, factory: Callable[[], object], *, name: str) -> None:
        self._factory = factory
        self._name = name
        self._lock = anyio.Lock()
        self._child: tuple[subprocess.Popen[bytes], Connection] | None = None

    def start(self) -> None:
        """Start the child now (it makes its object meanwhile), not at the first call."""
        if self._child is None:
            self._start()

    @property
    def pid(self) -> int | None:
        """The child's process id; None while there is none."""
        return None if self._child is None else self._child[0].pid

    async def run(self, method: str, *args: object) -> Any:
        """`method` of the child's object called with `args`; its exception raised here."""
        async with self._lock:
            if self._child is not None and self._child[0].poll() is not None:
                self._kill()  # it ended between calls (a kill, out of memory): not this call's fault
            process, conn = self._child or self._start()
            try:
                await anyio.to_thread.run_sync(
                    _send_call, conn, method, args, abandon_on_cancel=True
                )
                raw = await anyio.to_thread.run_sync(conn.recv_bytes, abandon_on_cancel=True)
            except (EOFError, OSError) as exc:
                self._kill()
                code = await _exit_code(process)
                raise CapabilityFailed(
                    f"{self._name} stopped while working (exit code {code})"
                ) from exc
            except BaseException:  # cancelled or timed out: the work is not wanted any more
                self._kill()
                self._start()  # ready sooner for the next call
                raise
            ok, value = self._read(raw)
        if not ok:
            raise value
        return value

    def _read(self, raw: bytes) -> tuple[bool, Any]:
        try:
            ok, value = ForkingPickler.loads(raw)
        except Exception as exc:  # noqa: BLE001 - e.g. an error whose __init__ its args do not fit
            answer = f"{self._name} answered what cannot be read here: {_named(exc)}"
            return False, CapabilityFailed(answer)
        if isinstance(value, CouldNotStart):
            self._kill()  # it is ending: the next call starts another, which may start
        return ok, value

    def close(self) -> None:
        """End the child (it finishes nothing it was doing)."""
        self._kill()

    def _start(self) -> tuple[subprocess.Popen[bytes], Connection]:
        factory = ForkingPickler.dumps(self._factory)  # one that does not pickle fails here
        ours, theirs = multiprocessing.Pipe()
        # Ctrl-C reaches the whole process group, the child too, whose end is the parent's to
        # decide: it inherits SIGINT blocked, across its start, and ignores it from `_serve` on.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed command
                [sys.executable, "-c", CHILD, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            theirs.close()
        self._child = (process, ours)
        with contextlib.suppress(OSError):  # a child gone already: its first call says so
            # sys.path before the factory, whose module may be found only on this one
            ours.send((self._name, os.getpid(), sys.path, _log_format()))
            ours.send_bytes(factory)
        return self._child

    def _kill(self) -> None:
        if self._child is None:
            return
        process, _conn = self._child
        self._child = None
        # A thread still blocked on the pipe sees it end and lets go of it, which closes it;
        # closing it here, under that thread, could close another file given its number.
        process.kill()
        # Gone at once as a rule, but not always (a large address space to free, a read stuck in
        # the kernel): it is waited for in a thread of its own, not by the event loop.
        threading.Thread(target=_reap, args=(process, self._name), daemon=True).start()


async def _exit_code(process: subprocess.Popen[bytes]) -> int | None:
    """A killed child's exit code, once it is gone (None if it outlives `STOP_WAIT_S`)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        return await anyio.to_thread.run_sync(process.wait, STOP_WAIT_S)
    return None


def _reap(process: subprocess.Popen[bytes], name: str) -> None:
    """Wait for a killed child to be gone; one that outlives `STOP_WAIT_S` is reaped later, by
    `subprocess`, when the next child starts."""
    try:
        process.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        logger.warning(
            "%s (pid %d) is still there %g s after it was killed", name, process.pid, STOP_WAIT_S
        )


def _log_format() -> tuple[int, logging.Formatter | None]:
    """The level and format of this process's log (its first handler's), for the child's to
    read as one with it."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    try:
        pickle.dumps(formatter)
    except Exception:  # noqa: BLE001 - a formatter of a library's own: the plain one then
        formatter = None
    return root.level, formatter


def _child() -> None:
    """The child's entry point (`CHILD`): take its name, parent and sys.path from the pipe, then
    serve."""
    conn = Connection(int(sys.argv[1]))
    try:
        name, parent, path, (level, formatter) = conn.recv()
    except EOFError:  # the parent went before it said anything
        return
    sys.path[:] = path
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])
    _serve(name, conn, parent)


def _serve(name: str, conn: Connection, parent: int) -> None:
    """The child: make the object, then answer calls until the parent goes (killed with it if
    it goes in the middle of one)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    end_with_parent(parent, signal.SIGKILL)
    try:
        worker = conn.recv()()  # the factory, its module imported as it is unpickled
    except Exception as exc:  # told to the first call, and logged here
        logger.exception("%s could not start", name)
        with contextlib.suppress(EOFError, OSError):
            _recv_call(conn)
            conn.send((False, CouldNotStart(f"{name} could not start: {_named(exc)}")))
        return
    while True:
        try:
            method, args = _recv_call(conn)
        except EOFError:
            return
        try:
            answer: tuple[bool, object] = (True, getattr(worker, method)(*args))
        except PatchbayError as exc:  # the SDK's refusals, each answered with its status
            answer = (False, exc)
        except Exception as exc:  # told to the parent, which raises it
            logger.exception("%s failed", name)
            answer = (False, CapabilityFailed(f"{name} failed: {_named(exc)}"))
        try:
            conn.send(answer)
        except Exception as exc:  # noqa: BLE001 - an answer or exception that does not pickle
            conn.send((False, CapabilityFailed(_named(exc))))


def _send_call(conn: Connection, method: str, args: tuple[object, ...]) -> None:
    """Send a call; its bytes arguments (a document: up to 64 MB) as they are, not copied into
    its pickle (protocol 5's out-of-band buffers)."""
    buffers: list[pickle.PickleBuffer] = []
    wrapped = tuple(pickle.PickleBuffer(a) if isinstance(a, bytes) else a for a in args)
    call = pickle.dumps((method, wrapped), protocol=5, buffer_callback=buffers.append)
    conn.send_bytes(call)
    conn.send(len(buffers))
    for buffer in buffers:
        conn.send_bytes(buffer.raw())


def _recv_call(conn: Connection) -> tuple[str, tuple[object, ...]]:
    call = conn.recv_bytes()
    buffers = [conn.recv_bytes() for _ in range(conn.recv())]
    method, args = ForkingPickler.loads(call, buffers=buffers)
    return method, args


def _named(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
