"""Helpers: services that give models tools and turn files into text, written with this SDK.

    from patchbay.helpers import Helper

    helper = Helper("weather", description="Forecasts for any town.")

    @helper.tool
    async def forecast(place: Place) -> Forecast:
        \"\"\"Tomorrow's weather at `place`.\"\"\"

Run it with `patchbay helper run my_module:helper --core http://127.0.0.1:8700`.
"""

from __future__ import annotations

from patchbay.helpers.sdk import (
    CapabilityFailed,
    EmptyInput,
    Helper,
    InputTooLarge,
    InvalidOutput,
    UnreadableInput,
    UnsupportedMediaType,
)
from patchbay.schemas.helpers import ToText

__all__ = [
    "CapabilityFailed",
    "EmptyInput",
    "Helper",
    "InputTooLarge",
    "InvalidOutput",
    "ToText",
    "UnreadableInput",
    "UnsupportedMediaType",
]
