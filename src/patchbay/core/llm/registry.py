"""Turns catalog entries (a model on a provider) into live `llm` models, kept across calls: async
ones where the model has one, else sync ones read in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llm
from llm.models import AsyncChainResponse

from patchbay.config import Settings
from patchbay.core.llm.local import LocalEngine, assemble_default_gguf
from patchbay.core.llm.logs import LlmLogWriter
from patchbay.core.llm.openai_compat import OpenAICompatModel
from patchbay.core.llm.prompts import llm_message, text_and_files
from patchbay.errors import InvalidRequest, ModelNotFound, PatchbayError, ProviderError
from patchbay.http1 import Http1Client
from patchbay.queue.base import PromptMessage

logger = logging.getLogger(__name__)

TOOL_ROUNDS = 6  # model calls one answer may take while it uses tools
UPSTREAM_CONNECT_S = 10.0  # how long a connection to a model's server may take


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """What the registry needs to build a model: the catalog rows, flattened, key decrypted."""

    name: str
    kind: str  # local | openai | llm
    upstream_model: str
    api_base: str | None
    api_key: str | None
    options: dict[str, Any]
    # What an OpenAI-compatible model reads itself (an `llm` plugin's model declares its own).
    attachment_types: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: `call` gets the model's arguments and returns what the model
    reads back (an error message included: a failing tool never breaks the answer)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[str]]


@dataclass(slots=True)
class Generation:
    """One model call in progress, with the further calls its tool calls lead to: iterate
    `deltas()`, then read usage and finish reason."""

    response: Any  # llm.AsyncResponse, or a chain of them when tools were offered
    model_name: str
    responses: list[Any] = field(default_factory=list)

    async def deltas(self) -> AsyncIterator[str]:
        try:
            if isinstance(self.response, AsyncChainResponse):
                async for response in self.response.responses():
                    self.responses.append(response)
                    async for chunk in response:
                        yield chunk
                return
            self.responses.append(self.response)
            chunks = self.response if _is_async(self.response) else _in_thread(self.response)
            async for chunk in chunks:
                yield chunk
        except PatchbayError:
            raise
        except llm.ModelError as exc:
            raise ProviderError(f"{self.model_name}: {exc}") from exc
        except Exception as exc:  # a plugin's, or an answer of a shape it did not foresee
            raise ProviderError(f"{self.model_name} failed: {exc!r}") from exc

    def _total(self, field_name: str) -> int | None:
        """The count over every round; a round's that is no whole number is not known."""
        values = [getattr(r, field_name, None) for r in self.responses]
        known = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        return sum(known) if known else None

    @property
    def input_tokens(self) -> int | None:
        return self._total("input_tokens")

    @property
    def output_tokens(self) -> int | None:
        return self._total("output_tokens")

    @property
    def finish_reason(self) -> str:
        data = self.responses[-1].response_json if self.responses else None
        if isinstance(data, dict) and data.get("finish_reason"):
            return str(data["finish_reason"])
        return "stop"


class ModelRegistry:
    """Builds each model once and reuses it; owns the shared HTTP session and the local engine."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._models: dict[tuple[object, ...], Any] = {}
        self._upstreams: dict[str, Http1Client] = {}  # by api_base
        self._engines: dict[Path, tuple[LocalEngine, str]] = {}
        self._engine_lock = asyncio.Lock()
        self.log_writer: LlmLogWriter | None = None
        if settings.llm_log.enabled:
            self.log_writer = LlmLogWriter(
                settings.llm_log_path,
                batch_size=settings.llm_log.batch_size,
                flush_interval_s=settings.llm_log.flush_interval_s,
            )

    async def start(self) -> None:
        if self.log_writer is not None:
            self.log_writer.start()

    def _upstream(self, api_base: str) -> Http1Client:
        """The client of an OpenAI-compatible server, one per `api_base`, kept."""
        client = self._upstreams.get(api_base)
        if client is None:
            client = self._upstreams[api_base] = Http1Client(
                api_base,
                connect_timeout_s=UPSTREAM_CONNECT_S,
                read_timeout_s=self._settings.jobs.upstream_timeout_s,
            )
        return client

    async def close(self) -> None:
        for client in self._upstreams.values():
            await client.close()
        self._upstreams.clear()
        if self.log_writer is not None:
            await asyncio.to_thread(self.log_writer.close)
        for engine, _url in self._engines.values():
            engine.close()
        self._engines.clear()

    async def start_generation(
        self,
        target: ModelTarget,
        *,
        conversation_id: str,
        messages: Sequence[PromptMessage],
        options: dict[str, Any],
        stream: bool = True,
        tools: list[ToolSpec] | None = None,
    ) -> Generation:
        """Start a call: all messages but the last as history, the last as the prompt; `tools`
        are offered to a model that supports them, and the calls it makes are run."""
        model = await self._model(target)
        *history, last = messages
        accepted = model.attachment_types
        prompt, attachments = text_and_files(last, accepted)
        conversation = model.conversation()
        conversation.id = conversation_id.lower()
        merged = {**target.options, **options}
        known = model.Options.model_fields
        dropped = sorted(set(merged) - set(known))
        if dropped:
            logger.debug("%s ignores options %s", target.name, dropped)
        kept = {k: v for k, v in merged.items() if k in known and v is not None}
        earlier = [llm_message(message, accepted) for message in history]
        try:
            # A sync model's tools would call ours from its thread: tools go to async ones only.
            if tools and getattr(model, "supports_tools", False) and _is_async(model):
                response = conversation.chain(
                    prompt,
                    attachments=attachments,
                    messages=earlier,
                    stream=stream,
                    options=kept,
                    tools=[_llm_tool(tool) for tool in tools],
                    chain_limit=TOOL_ROUNDS,
                )
            else:
                response = conversation.prompt(
                    prompt, attachments=attachments, messages=earlier, stream=stream, options=kept
                )
        except ValueError as exc:  # options the model's Options class rejects
            raise InvalidRequest(f"{target.name}: {exc}") from exc
        return Generation(response=response, model_name=target.name)

    def log(self, generation: Generation) -> None:
        """Queue a finished call (each round of it) for the `llm` logs database."""
        if self.log_writer is not None:
            for response in generation.responses:
                self.log_writer.submit(response)

    async def accepted_media(self, target: ModelTarget) -> frozenset[str]:
        """The media types `target` reads itself: files of these types go to it as they are."""
        if target.kind != "llm":
            return target.attachment_types  # known without starting a local engine
        try:
            model = await self._model(target)
        except ModelNotFound:  # its job says so when it runs
            return frozenset()
        return frozenset(model.attachment_types)

    async def _model(self, target: ModelTarget) -> Any:
        key = (
            target.name,
            target.kind,
            target.upstream_model,
            target.api_base,
            target.api_key,
            target.attachment_types,
        )
        model = self._models.get(key)
        if model is None:
            model = await self._build(target)
            self._models[key] = model
        return model

    async def _build(self, target: ModelTarget) -> Any:
        if target.kind == "local":
            engine, api_base = await self.local_engine(target.upstream_model)
            return self._compat(target, api_base=api_base, api_key=engine.api_key)
        if target.kind == "openai":
            if not target.api_base:
                raise InvalidRequest(f"provider of {target.name} has no api_base")
            return self._compat(target, api_base=target.api_base, api_key=target.api_key)
        return _plugin_model(target)

    def _compat(self, target: ModelTarget, *, api_base: str, api_key: str | None) -> Any:
        return OpenAICompatModel(
            model_id=target.name,
            upstream_model=target.upstream_model,
            api_key=api_key,
            attachment_types=target.attachment_types,
            client=self._upstream(api_base),
        )

    async def local_engine(self, model: str) -> tuple[LocalEngine, str]:
        """The running engine for a local model (a GGUF path, or the embedded default's name)."""
        async with self._engine_lock:
            gguf = await asyncio.to_thread(self._gguf_path, model)
            if gguf not in self._engines:
                local = self._settings.local_model
                engine = LocalEngine(
                    gguf=gguf,
                    context_size=local.context_size,
                    parallel=local.parallel,
                    threads=local.threads,
                )
                self._engines[gguf] = (engine, await asyncio.to_thread(engine.start))
            return self._engines[gguf]

    def _gguf_path(self, model: str) -> Path:
        if model.endswith(".gguf"):
            return Path(model)
        configured = self._settings.local_model.gguf_path
        return configured or assemble_default_gguf(self._settings.data_dir / "models")


def _plugin_model(target: ModelTarget) -> Any:
    """The plugin's async model; else its sync one, whose answers are read in a thread."""
    try:
        return llm.get_async_model(target.upstream_model)
    except llm.UnknownModelError:
        pass
    try:
        return llm.get_model(target.upstream_model)
    except llm.UnknownModelError as exc:
        raise ModelNotFound(
            f"no installed llm plugin provides a model {target.upstream_model!r}; "
            "see `llm models list`"
        ) from exc


def _is_async(model_or_response: Any) -> bool:
    return isinstance(model_or_response, llm.AsyncModel | llm.AsyncResponse)


_END = object()


async def _in_thread(response: llm.Response) -> AsyncIterator[str]:
    """A sync model's answer, read in a worker thread as it comes. When the reader stops early (a
    job cancelled, the core stopping), the thread closes the model's stream at its next chunk, so
    the model's call ends there rather than running to its end unheard."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def hand(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(chunks.put_nowait, item)

    def read() -> None:
        stream = iter(response)
        try:
            for chunk in stream:
                if stop.is_set():
                    return
                hand(chunk)
        except Exception as exc:  # noqa: BLE001 - handed to the loop, raised there
            hand(exc)
        else:
            hand(_END)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    reading = loop.run_in_executor(None, read)
    try:
        while (chunk := await chunks.get()) is not _END:
            if isinstance(chunk, Exception):
                raise chunk
            yield str(chunk)
    finally:
        stop.set()
    await reading


def _llm_tool(tool: ToolSpec) -> llm.Tool:
    async def implementation(**arguments: Any) -> str:
        return await tool.call(arguments)

    return llm.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        implementation=implementation,
    )
