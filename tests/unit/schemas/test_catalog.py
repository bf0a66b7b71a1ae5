"""A model's `attachment_types` option: a list of media types, kept lower-case and sorted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from patchbay.schemas.catalog import ModelCreate, ModelUpdate, ProviderCreate


def test_attachment_types_are_media_types() -> None:
    model = ModelCreate(
        name="vision",
        provider="up",
        options={"attachment_types": ["image/PNG", " image/jpeg", "image/png"], "top_p": 1},
    )
    assert model.options == {"attachment_types": ["image/jpeg", "image/png"], "top_p": 1}
    provider = ProviderCreate(name="up", kind="openai", options={"attachment_types": []})
    assert provider.options == {"attachment_types": []}
    assert ModelUpdate(options=None).options is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("image/png", "is a list of media types"),
        (["image/png", 3], "is a list of media types"),
        (["png"], "'png' is not a media type"),
    ],
)
def test_other_values_are_refused(value: object, expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        ModelUpdate(options={"attachment_types": value})
