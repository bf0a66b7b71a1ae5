"""A helper written with the SDK in a few lines, as a third party would (run by the tests)."""

from __future__ import annotations

from pydantic import BaseModel

from patchbay.helpers import Helper


class Place(BaseModel):
    town: str


class Forecast(BaseModel):
    town: str
    celsius: float


helper = Helper("weather", description="Forecasts for any town.")


@helper.tool(idempotent=True)
async def forecast(place: Place) -> Forecast:
    """Tomorrow's temperature at a town."""
    return Forecast(town=place.town, celsius=len(place.town) * 3.5)


@helper.tool
async def broken(place: Place) -> Forecast:
    """Promises a forecast, answers with words (the kind of bug the SDK catches)."""
    return Forecast.model_construct(town=place.town, celsius="warm")  # type: ignore[arg-type]
