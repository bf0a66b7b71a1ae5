"""The helper SDK: declare capabilities as typed async functions; `Helper` turns them into a manifest.

    helper = Helper("weather", description="Forecasts for any town.")

    @helper.tool
    async def forecast(place: Place) -> Forecast:
        \"\"\"Tomorrow's weather at `place`.\"\"\"

    @helper.to_text("application/pdf")
    async def pdf(data: bytes, media_type: str) -> ToText: ...

A tool takes one pydantic model (or plain typed keyword parameters, gathered into one) and returns
anything pydantic can describe; both JSON schemas come from the annotations, the description from
the docstring. `patchbay.helpers.app` serves the contract; `patchbay.helpers.runner` runs it.

What a capability may raise to refuse its input, and what the SDK raises for it (each is answered
as `{"error": {"code", "message", "retryable"}}` with its status):

    InvalidRequest (bad JSON, schema)  400   EmptyInput, UnsupportedMediaType  400
    UnreadableInput (corrupt file)     422   InputTooLarge                     413
    InvalidOutput (breaks its schema)  500   CapabilityFailed (an exception)   500
    CapabilityTimeout                  504, retryable
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic_core import to_jsonable_python

from patchbay.errors import InvalidRequest, PatchbayError, PayloadTooLarge
from patchbay.schemas.helpers import NAME, Capability, HelperManifest, ToText

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ToTextFunction = Callable[[bytes, str], Awaitable[ToText]]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_TO_TEXT = TypeAdapter(ToText)


class EmptyInput(InvalidRequest):
    code = "empty_input"


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"


class UnreadableInput(InvalidRequest):
    """The input has the right type but cannot be read: a corrupt file, an undecodable stream."""

    code = "unreadable_input"
    status = 422


class InputTooLarge(PayloadTooLarge):
    """Over a size limit: the request body, an image's pixel count, a document's page count."""


class InvalidOutput(PatchbayError):
    """The capability returned something its own output schema rejects: a bug in the helper."""

    code = "invalid_output"
    status = 500


class CapabilityFailed(PatchbayError):
    """The capability raised an exception it did not mean to."""

    code = "capability_failed"
    status = 500


class CapabilityTimeout(PatchbayError):
    code = "capability_timeout"
    status = 504
    retryable = True


@dataclass(frozen=True, slots=True)
class Tool:
    """A JSON-in, JSON-out capability, offered to models as a tool."""

    name: str
    description: str
    function: Callable[..., Awaitable[Any]]
    input_model: type[BaseModel]
    output: TypeAdapter[Any]
    spread: bool  # call as function(**fields) rather than function(model)
    idempotent: bool
    timeout_s: float

    def capability(self) -> Capability:
        return Capability(
            name=self.name,
            description=self.description,
            kind="tool",
            input_schema=self.input_model.model_json_schema(),
            output_schema=self.output.json_schema(mode="serialization"),
            idempotent=self.idempotent,
            timeout_s=self.timeout_s,
        )

    async def call(self, body: bytes) -> Any:
        """Validate `body`, run the function, and return its result checked against its schema.

        Raises:
            InvalidRequest: the body is not JSON or does not match the input schema.
            InvalidOutput: the result does not match the output schema.
        """
        try:
            arguments = self.input_model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise InvalidRequest(f"{self.name}: {describe(exc)}") from exc
        if self.spread:
            fields = type(arguments).model_fields
            result = await self.function(**{k: getattr(arguments, k) for k in fields})
        else:
            result = await self.function(arguments)
        return checked_output(self.name, self.output, result)


@dataclass(frozen=True, slots=True)
class ToTextConverter:
    """A capability that turns a file of one of `media_types` into text."""

    name: str
    description: str
    function: ToTextFunction
    media_types: tuple[str, ...]
    idempotent: bool
    timeout_s: float

    def capability(self) -> Capability:
        return Capability(
            name=self.name,
            description=self.description,
            kind="to-text",
            output_schema=_TO_TEXT.json_schema(mode="serialization"),
            media_types=list(self.media_types),
            idempotent=self.idempotent,
            timeout_s=self.timeout_s,
        )

    def accepts(self, media_type: str) -> bool:
        return any(matches(pattern, media_type) for pattern in self.media_types)

    async def call(self, data: bytes, media_type: str) -> Any:
        if not self.accepts(media_type):
            raise UnsupportedMediaType(
                f"{self.name} cannot read {media_type or 'a body without a Content-Type'}; "
                f"send one of: {', '.join(self.media_types)}"
            )
        if not data:
            raise EmptyInput(f"{self.name}: the body is empty; send the file's bytes")
        return checked_output(self.name, _TO_TEXT, await self.function(data, media_type))


CapabilityImpl = Tool | ToTextConverter


class Helper:
    """A helper: a name, a description and capabilities. Instantiate it, or subclass it to set
    class attributes and load what its capabilities need in `startup()`."""

    name: str = ""
    description: str = ""
    version: str = "0"

    def __init__(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        version: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.name = name or self.name
        if not re.match(NAME, self.name):
            raise ValueError(f"helper name {self.name!r} must match {NAME}")
        if description is not None:
            self.description = description
        if version is not None:
            self.version = version
        self.max_body_bytes = max_body_bytes
        self._capabilities: dict[str, CapabilityImpl] = {}

    async def startup(self) -> None:
        """Runs once before the helper registers: load models here, not at import."""

    async def shutdown(self) -> None:
        """Runs once after the helper deregistered."""

    def run(
        self,
        *,
        port: int = 8800,
        host: str = "127.0.0.1",
        core_url: str | None = None,
        key: str | None = None,
    ) -> None:
        """Serve this helper until stopped, registered with `core_url` if given (what
        `patchbay helper run module:helper` does, for `python my_helper.py`)."""
        from patchbay.helpers.runner import Serving, run_helper

        run_helper(self, Serving(host=host, port=port, core_url=core_url, key=key))

    @property
    def capabilities(self) -> list[CapabilityImpl]:
        return list(self._capabilities.values())

    def find(self, name: str) -> CapabilityImpl | None:
        return self._capabilities.get(name)

    def manifest(self, base_url: str) -> HelperManifest:
        return HelperManifest(
            name=self.name,
            version=self.version,
            description=self.description,
            base_url=base_url,
            capabilities=[impl.capability() for impl in self._capabilities.values()],
        )

    def add(self, impl: CapabilityImpl) -> None:
        if not re.match(NAME, impl.name):
            raise ValueError(f"capability name {impl.name!r} must match {NAME}")
        if impl.name in self._capabilities:
            raise ValueError(f"{self.name} already has a capability named {impl.name!r}")
        self._capabilities[impl.name] = impl

    @overload
    def tool(self, function: F, /) -> F: ...

    @overload
    def tool(
        self,
        function: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        timeout_s: float = 30.0,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        function: Callable[..., Awaitable[Any]] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        timeout_s: float = 30.0,
    ) -> Any:
        """Declare a tool: `@helper.tool` or `@helper.tool(idempotent=True, timeout_s=5)`."""

        def declare(function: F) -> F:
            self.add(
                make_tool(
                    function,
                    name=name,
                    description=description,
                    idempotent=idempotent,
                    timeout_s=timeout_s,
                )
            )
            return function

        return declare if function is None else declare(function)

    def to_text(
        self,
        *media_types: str,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = 300.0,
    ) -> Callable[[ToTextFunction], ToTextFunction]:
        """Declare a to-text capability for `media_types` (`"image/*"` matches every image)."""
        if not media_types:
            raise ValueError("to_text needs at least one media type, such as 'application/pdf'")

        def declare(function: ToTextFunction) -> ToTextFunction:
            _require_coroutine(function)
            self.add(
                ToTextConverter(
                    name=name or function.__name__,
                    description=description
                    or inspect.getdoc(function)
                    or f"Turns {', '.join(media_types)} into text.",
                    function=function,
                    media_types=tuple(t.lower() for t in media_types),
                    idempotent=True,  # reading a file changes nothing
                    timeout_s=timeout_s,
                )
            )
            return function

        return declare


def make_tool(
    function: Callable[..., Awaitable[Any]],
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    timeout_s: float = 30.0,
) -> Tool:
    """A `Tool` from an annotated async function; raises TypeError/ValueError naming the fix."""
    _require_coroutine(function)
    where = function.__qualname__
    hints = get_type_hints(function)
    if "return" not in hints:
        raise TypeError(f"{where}: annotate the return type; it becomes the output schema")
    parameters = list(inspect.signature(function).parameters.values())
    for parameter in parameters:
        if parameter.name not in hints:
            raise TypeError(f"{where}: annotate parameter {parameter.name!r}")
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs cannot become a JSON schema")
    model = _single_model(parameters, hints)
    fields: dict[str, Any] = {
        p.name: (hints[p.name], ... if p.default is p.empty else p.default) for p in parameters
    }
    input_model = model or create_model(
        f"{function.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    text = description or inspect.getdoc(function)
    if not text:
        raise ValueError(f"{where}: add a docstring; models read it to decide when to call")
    return Tool(
        name=name or function.__name__,
        description=text,
        function=function,
        input_model=input_model,
        output=TypeAdapter(hints["return"]),
        spread=model is None,
        idempotent=idempotent,
        timeout_s=timeout_s,
    )


def checked_output(name: str, adapter: TypeAdapter[Any], result: object) -> Any:
    """`result` as JSON-ready data, once its output schema accepts it."""
    try:
        data = to_jsonable_python(result)
        return adapter.dump_python(adapter.validate_python(data), mode="json")
    except (ValidationError, ValueError, TypeError) as exc:
        reason = describe(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidOutput(f"{name} returned output its own schema rejects: {reason}") from exc


def describe(exc: ValidationError, *, limit: int = 5) -> str:
    """A validation error in one line: `where: what` for the first few problems."""
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def matches(pattern: str, media_type: str) -> bool:
    """Whether `media_type` (lowercase, no parameters) is `pattern`, or in it for `type/*`."""
    if pattern in ("*/*", media_type):
        return True
    return pattern.endswith("/*") and media_type.startswith(pattern[:-1])


def _single_model(
    parameters: list[inspect.Parameter], hints: dict[str, Any]
) -> type[BaseModel] | None:
    """The model of a function that takes exactly one pydantic model, else None."""
    if len(parameters) != 1:
        return None
    first = hints[parameters[0].name]
    return first if isinstance(first, type) and issubclass(first, BaseModel) else None


def _require_coroutine(function: Callable[..., Any]) -> None:
    if not inspect.iscoroutinefunction(function):
        raise TypeError(
            f"{function.__qualname__} must be `async def`; run CPU-bound work with "
            "anyio.to_thread.run_sync so the helper keeps answering, or with "
            "patchbay.helpers.isolated.Isolated where it may never end (a timeout stops it)"
        )
