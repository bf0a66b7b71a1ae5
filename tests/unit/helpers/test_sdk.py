"""The helper SDK: capabilities from typed async functions, their schemas, and the manifest."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from patchbay.errors import InvalidRequest
from patchbay.helpers import Helper, InvalidOutput, ToText, UnsupportedMediaType
from patchbay.helpers.sdk import EmptyInput, Tool, ToTextConverter, matches
from patchbay.schemas.helpers import HelperManifest


class Place(BaseModel):
    town: str
    days: int = Field(default=1, ge=1, le=7)


class Forecast(BaseModel):
    town: str
    sky: Literal["sunny", "cloudy", "rain"]
    celsius: float


def weather() -> Helper:
    helper = Helper("weather", description="Forecasts.", version="2")

    @helper.tool(idempotent=True, timeout_s=5)
    async def forecast(place: Place) -> Forecast:
        """Tomorrow's weather at a place."""
        return Forecast(town=place.town, sky="sunny", celsius=21)

    @helper.tool
    async def convert(celsius: float, unit: Literal["F", "K"] = "F") -> float:
        """Celsius to another unit."""
        return celsius * 9 / 5 + 32 if unit == "F" else celsius + 273.15

    @helper.to_text("text/plain", "text/*")
    async def words(data: bytes, media_type: str) -> ToText:
        return ToText(text=data.decode())

    return helper


def test_the_manifest_carries_schemas_from_the_annotations() -> None:
    manifest = weather().manifest("http://127.0.0.1:8899")
    HelperManifest.model_validate(manifest.model_dump())  # what the core will parse
    forecast, convert, words = manifest.capabilities
    assert (manifest.name, manifest.version, manifest.description) == ("weather", "2", "Forecasts.")
    assert forecast.description == "Tomorrow's weather at a place."
    assert (forecast.kind, forecast.idempotent, forecast.timeout_s) == ("tool", True, 5)
    assert forecast.input_schema["required"] == ["town"]
    assert forecast.input_schema["properties"]["days"]["maximum"] == 7  # type: ignore[index]
    assert forecast.output_schema["properties"]["sky"]["enum"] == ["sunny", "cloudy", "rain"]  # type: ignore[index]
    assert convert.input_schema["additionalProperties"] is False
    assert convert.input_schema["required"] == ["celsius"]
    assert convert.output_schema == {"type": "number"}
    assert (words.kind, words.media_types, words.idempotent) == (
        "to-text",
        ["text/plain", "text/*"],
        True,
    )
    assert words.description == "Turns text/plain, text/* into text."
    assert words.output_schema["required"] == ["text"]


async def test_a_tool_checks_its_input_and_output() -> None:
    tool = weather().find("forecast")
    assert isinstance(tool, Tool)
    assert await tool.call(b'{"town": "Oslo"}') == {"town": "Oslo", "sky": "sunny", "celsius": 21.0}
    with pytest.raises(InvalidRequest, match=r"forecast: days: Input should be less than"):
        await tool.call(b'{"town": "Oslo", "days": 9}')
    with pytest.raises(InvalidRequest, match="Invalid JSON"):
        await tool.call(b"{not json")


async def test_keyword_parameters_become_one_input_object() -> None:
    tool = weather().find("convert")
    assert isinstance(tool, Tool)
    assert await tool.call(b'{"celsius": 100}') == 212.0
    assert await tool.call(b'{"celsius": 0, "unit": "K"}') == 273.15
    with pytest.raises(InvalidRequest, match="Extra inputs are not permitted"):
        await tool.call(b'{"celsius": 0, "kelvin": true}')


async def test_output_that_breaks_its_schema_is_refused() -> None:
    helper = Helper("liar")

    @helper.tool
    async def forecast(place: Place) -> Forecast:
        """Claims a sky that does not exist."""
        return Forecast.model_construct(town=place.town, sky="plaid", celsius=1)  # type: ignore[arg-type]

    @helper.tool
    async def count(n: int) -> list[int]:
        """Returns a dict where a list is promised."""
        result: Any = {"n": n}
        return result  # type: ignore[no-any-return]

    with pytest.raises(InvalidOutput, match=r"forecast returned output .* sky: Input should be"):
        await helper.capabilities[0].call(b'{"town": "Oslo"}')  # type: ignore[call-arg]
    with pytest.raises(InvalidOutput, match="valid list"):
        await helper.capabilities[1].call(b'{"n": 1}')  # type: ignore[call-arg]


async def test_to_text_checks_the_media_type_and_the_body() -> None:
    words = weather().find("words")
    assert isinstance(words, ToTextConverter)
    assert await words.call(b"hello", "text/markdown") == {
        "text": "hello",
        "format": "plain",
        "pages": None,
        "duration_s": None,
    }
    with pytest.raises(UnsupportedMediaType, match="words cannot read image/png; send one of"):
        await words.call(b"\x89PNG", "image/png")
    with pytest.raises(EmptyInput):
        await words.call(b"", "text/plain")


@pytest.mark.parametrize(
    ("pattern", "media_type", "expected"),
    [
        ("image/*", "image/png", True),
        ("image/*", "imagery/png", False),
        ("*/*", "application/pdf", True),
        ("text/csv", "text/csv", True),
        ("text/csv", "text/html", False),
    ],
)
def test_media_type_patterns(pattern: str, media_type: str, expected: bool) -> None:
    assert matches(pattern, media_type) is expected


def test_declaration_mistakes_are_caught_at_import_with_the_fix() -> None:
    helper = Helper("strict")

    def sync(place: Place) -> Forecast:
        """Not async."""
        raise NotImplementedError

    async def undocumented(place: Place) -> Forecast:
        raise NotImplementedError

    async def unannotated(place):
        """No annotations."""

    async def documented(place: Place) -> Forecast:
        """Fine."""
        raise NotImplementedError

    with pytest.raises(TypeError, match="must be `async def`"):
        helper.tool(sync)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="add a docstring"):
        helper.tool(undocumented)
    with pytest.raises(TypeError, match="annotate the return type"):
        helper.tool(unannotated)
    helper.tool(documented)
    with pytest.raises(ValueError, match="already has a capability named 'documented'"):
        helper.tool(documented)
    with pytest.raises(ValueError, match="capability name 'Bad Name' must match"):
        helper.tool(name="Bad Name")(documented)
    with pytest.raises(ValueError, match="helper name 'No' must match"):
        Helper("No")
    with pytest.raises(ValueError, match="at least one media type"):
        helper.to_text()


def test_a_subclass_sets_its_name_and_description_as_class_attributes() -> None:
    class Clock(Helper):
        name = "clock"
        description = "Tells the time."

        def __init__(self) -> None:
            super().__init__()
            self.tool(self.now)

        async def now(self, zone: str = "UTC") -> str:
            """The time now in `zone`."""
            return f"12:00 {zone}"

    manifest = Clock().manifest("http://127.0.0.1:1")
    assert (manifest.name, manifest.description) == ("clock", "Tells the time.")
    assert manifest.capabilities[0].input_schema["properties"] == {
        "zone": {"default": "UTC", "title": "Zone", "type": "string"}
    }
