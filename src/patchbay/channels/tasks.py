"""Tasks by key: which task works on each key (a job followed, an answer owed) right now."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyedTasks(Generic[K]):
    """The task working on each key; a task is forgotten when it ends, unless another task has
    taken its key meanwhile."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[Any]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def get(self, key: K) -> asyncio.Task[Any] | None:
        return self._tasks.get(key)

    def put(self, key: K, task: asyncio.Task[Any]) -> None:
        """`task` works on `key` now, until it ends or another is put in its place."""
        self._tasks[key] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self._tasks.get(key) is done:
                del self._tasks[key]

        task.add_done_callback(forget)

    def __iter__(self) -> Iterator[K]:
        """The keys worked on now (a copy: tasks may end meanwhile)."""
        return iter(list(self._tasks))

    def all(self) -> list[asyncio.Task[Any]]:
        return list(self._tasks.values())
