"""Blocking work in a child process: a call over its time is stopped, and the next one answered."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from functools import partial
from pathlib import Path
from subprocess import Popen

import anyio
import anyio.to_thread
import pytest

from patchbay.helpers.isolated import Isolated
from patchbay.helpers.sdk import CapabilityFailed, InputTooLarge


class Worker:
    """Made once per child: `pid` tells which child answered, `calls` that it kept its state."""

    def __init__(self) -> None:
        self.calls = 0

    def count(self) -> tuple[int, int]:
        self.calls += 1
        return os.getpid(), self.calls

    def hang(self) -> None:
        time.sleep(3600)

    def tell(self, text: str) -> None:
        logging.getLogger("worker").info(text)

    def refuse(self) -> None:
        raise InputTooLarge("over the limit")

    def size(self, data: bytes) -> int:
        return len(data)

    def die(self) -> None:
        os._exit(3)

    def fail_in_a_library(self) -> None:
        from tests.support.foreign_error import ForeignError

        raise ForeignError("the parser gave up")

    def refuse_oddly(self) -> None:
        raise OddRefusal(10, 12)


class OddRefusal(InputTooLarge):
    """Pickles, but cannot be made again from its message alone."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"{size} is over {limit}")


class BrokenStart:
    """Cannot be made until `path` exists: a missing package, a model that does not load."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise ModuleNotFoundError("No module named 'missing_parser'")

    def count(self) -> int:
        return 1


@pytest.fixture
def isolated() -> Isolated:
    return Isolated(Worker, name="test worker")


async def test_one_child_keeps_its_state_between_calls(isolated: Isolated) -> None:
    try:
        first, second = await isolated.run("count"), await isolated.run("count")
    finally:
        isolated.close()
    assert first[0] == second[0] != os.getpid()
    assert (first[1], second[1]) == (1, 2)


async def test_a_call_over_its_time_is_stopped_and_the_next_is_answered(
    isolated: Isolated,
) -> None:
    try:
        child, _ = await isolated.run("count")
        with pytest.raises(TimeoutError), anyio.fail_after(0.5):
            await isolated.run("hang")
        with anyio.fail_after(30):  # not after the hour the hung call would take
            fresh, calls = await isolated.run("count")
    finally:
        isolated.close()
    assert fresh != child and calls == 1
    wait_reaped(child, "the hung child was left working")


async def test_the_event_loop_goes_on_while_a_killed_child_is_waited_for(
    isolated: Isolated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed child is gone at once as a rule, but a large one may take a while (its memory
    freed): the wait for it here lasts until the loop has run a callback, or 5 s."""
    loop = asyncio.get_running_loop()
    waited = Popen.wait
    loop_ran: list[bool] = []
    reaped = threading.Event()

    def slow_wait(process: Popen[bytes], timeout: float | None = None) -> int:
        ran = threading.Event()
        loop.call_soon_threadsafe(ran.set)
        loop_ran.append(ran.wait(5))
        try:
            return waited(process, timeout)
        finally:
            reaped.set()

    try:
        child, _ = await isolated.run("count")
        with monkeypatch.context() as patched:
            patched.setattr(Popen, "wait", slow_wait)
            with pytest.raises(TimeoutError), anyio.fail_after(0.5):
                await isolated.run("hang")
            assert await anyio.to_thread.run_sync(reaped.wait, 10)
    finally:
        isolated.close()
    assert loop_ran[0] is True
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # reaped, not left a zombie


async def test_the_childs_error_is_raised_as_it_is(isolated: Isolated) -> None:
    try:
        with pytest.raises(InputTooLarge, match="over the limit"):
            await isolated.run("refuse")
        assert (await isolated.run("count"))[1] == 1  # the same child goes on
    finally:
        isolated.close()


async def test_a_large_body_is_sent_without_a_copy_of_it(isolated: Isolated) -> None:
    size = 32 * 1024 * 1024  # documents take up to 64 MB
    body = os.urandom(size)
    tracemalloc.start()
    try:
        assert await isolated.run("size", body) == len(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        isolated.close()
    assert peak < size / 4  # not pickled whole: the helper would hold it twice


async def test_another_librarys_error_is_a_failure_naming_it_and_is_not_loaded_here(
    isolated: Isolated,
) -> None:
    try:
        child, _ = await isolated.run("count")
        with pytest.raises(CapabilityFailed, match="ForeignError: the parser gave up"):
            await isolated.run("fail_in_a_library")
        assert await isolated.run("count") == (child, 2)  # the same child goes on
    finally:
        isolated.close()
    assert "tests.support.foreign_error" not in sys.modules  # as markitdown's errors are not


async def test_an_error_that_cannot_be_made_again_here_is_a_failure_and_the_child_goes_on(
    isolated: Isolated,
) -> None:
    try:
        child, _ = await isolated.run("count")
        with pytest.raises(CapabilityFailed, match="cannot be read here: TypeError"):
            await isolated.run("refuse_oddly")
        assert await isolated.run("count") == (child, 2)  # what it had loaded stays loaded
    finally:
        isolated.close()


async def test_a_child_that_cannot_start_says_why_and_the_next_call_tries_again(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "installed"
    isolated = Isolated(partial(BrokenStart, ready), name="test worker")
    try:
        isolated.start()
        for _ in range(2):
            with pytest.raises(CapabilityFailed, match="test worker could not start: Module"):
                await isolated.run("count")
        ready.touch()
        assert await isolated.run("count") == 1
    finally:
        isolated.close()


async def test_a_child_that_dies_is_a_failure_and_is_started_again(isolated: Isolated) -> None:
    try:
        with pytest.raises(CapabilityFailed, match="exit code 3"):
            await isolated.run("die")
        assert (await isolated.run("count"))[1] == 1
    finally:
        isolated.close()


async def test_a_child_that_ended_while_idle_is_replaced_before_the_next_call(
    isolated: Isolated,
) -> None:
    try:
        child, _ = await isolated.run("count")
        os.kill(child, signal.SIGKILL)  # the kernel's OOM killer, or anyone's kill
        wait_gone(child, "the killed child lived on")
        fresh, calls = await isolated.run("count")  # not a failure of this call
    finally:
        isolated.close()
    assert fresh != child and calls == 1


async def test_ctrl_c_reaches_the_child_and_neither_ends_it_nor_shows_a_traceback(
    isolated: Isolated, capfd: pytest.CaptureFixture[str]
) -> None:
    try:
        isolated.start()
        child = isolated.pid
        assert child is not None
        os.kill(child, signal.SIGINT)  # starting: Ctrl-C to the group, as `patchbay up` is
        first, _ = await isolated.run("count")
        os.kill(child, signal.SIGINT)  # idle, between calls
        await anyio.sleep(0.3)
        second, calls = await isolated.run("count")
    finally:
        isolated.close()
    assert first == second == child and calls == 2  # the parent decides when it ends
    assert "KeyboardInterrupt" not in capfd.readouterr().err


async def test_the_child_logs_as_its_parent_does(
    isolated: Isolated, capfd: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("helper-x %(levelname)s %(name)s: %(message)s"))
    handlers, level = root.handlers[:], root.level
    root.handlers[:], root.level = [handler], logging.INFO
    try:
        await isolated.run("tell", "read 3 pages")
    finally:
        root.handlers[:], root.level = handlers, level
        isolated.close()
    assert "helper-x INFO worker: read 3 pages" in capfd.readouterr().err.splitlines()


PARENT = """
import anyio, sys
from patchbay.helpers.isolated import Isolated
from tests.unit.helpers.test_isolated import Worker

async def main():
    isolated = Isolated(Worker, name="orphan")
    pid, _ = await isolated.run("count")
    print(pid, flush=True)
    await isolated.run("hang")

anyio.run(main)
"""


def test_a_child_ends_with_its_parent_even_in_the_middle_of_a_call() -> None:
    argv = [sys.executable, "-c", PARENT]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            time.sleep(0.2)  # it is in `hang` now, reading nothing from the pipe
        finally:
            parent.kill()
    wait_gone(child, "the child outlived its parent")


MAIN_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
if __name__ != "__main__":  # multiprocessing's spawn runs the parent's main script again
    print("the main script ran again", flush=True)
else:
    import anyio, os
    from pathlib import Path
    from patchbay.helpers.isolated import Isolated
    from tests.unit.helpers.test_isolated import Worker

    def children():
        stats = (path.read_text().rsplit(")", 1)[1].split() for path in Path("/proc").glob("[0-9]*/stat"))
        return sum(fields[1] == str(os.getpid()) for fields in stats)

    async def main():
        isolated = Isolated(Worker, name="lean")
        await isolated.run("count")
        print("children:", children(), flush=True)
        isolated.close()

    anyio.run(main)
"""


def test_the_child_runs_neither_the_main_script_again_nor_a_resource_tracker(
    tmp_path: Path,
) -> None:
    # The CLI is the helpers' main script: run again, it cost each child 17 MB, and the
    # resource tracker (a process of its own) 12 MB more, for locks no one here uses.
    script = tmp_path / "main.py"
    script.write_text(MAIN_SCRIPT.format(root=str(Path(__file__).parents[3])))
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=True
    )
    assert ran.stdout.splitlines() == ["children: 1"], ran.stdout


def wait_gone(pid: int, failure: str) -> None:
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def wait_reaped(pid: int, failure: str) -> None:
    """Until the process is gone and reaped (which a thread of its parent's does, after it is
    killed), not only a zombie."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has ended; its parent (now init) has not yet reaped it
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return status != "Z"
