"""An `llm` plugin whose model has no async variant, as many plugins' models have none: it
answers `You said: <prompt>` word by word, and fails with `llm.ModelError` when asked to. Asked
to answer `slowly`, it waits `SLOW_WORD_S` before each word and says when its call ended and how
many words it had sent by then (`SyncWords.ended`)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import llm

MODEL_ID = "sync-words"
SLOW_WORD_S = 0.1


class SyncWords(llm.Model):
    model_id = MODEL_ID
    can_stream = True
    ended = threading.Event()  # a slow call ended, finished or stopped
    sent = 0  # words a slow call had sent when it ended

    def execute(
        self, prompt: llm.Prompt, stream: bool, response: llm.Response, conversation: Any
    ) -> Iterator[str]:
        if "fail" in (prompt.prompt or ""):
            raise llm.ModelError("sync-words was asked to fail")
        words = f"You said: {prompt.prompt}".split(" ")
        response.set_usage(input=len((prompt.prompt or "").split()), output=len(words))
        slow = "slowly" in (prompt.prompt or "")
        sent = 0
        try:
            for index, word in enumerate(words):
                if slow:
                    time.sleep(SLOW_WORD_S)
                yield word if index == 0 else " " + word
                sent += 1
        finally:
            if slow:
                SyncWords.sent = sent
                SyncWords.ended.set()


@llm.hookimpl
def register_models(register: Any) -> None:
    register(SyncWords())


@contextmanager
def sync_plugin() -> Iterator[None]:
    """This module as an installed `llm` plugin, in this process, for the block."""
    module = sys.modules[__name__]
    llm.plugins.pm.register(module, name="patchbay-tests-sync-words")
    try:
        yield
    finally:
        llm.plugins.pm.unregister(module)
