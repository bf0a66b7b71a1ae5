"""`patchbay helper builtin -o KEY=VALUE`: options become the helper's nested settings."""

from __future__ import annotations

import pytest
import typer

from patchbay.cli.helpers import parse_options


def test_options_parse_json_values_and_dotted_keys() -> None:
    assert parse_options(["model=tiny.en", "beam_size=5", "language=null"]) == {
        "model": "tiny.en",
        "beam_size": 5,
        "language": None,
    }
    assert parse_options(["speech.model=base", "speech.threads=1", "frames=3"]) == {
        "speech": {"model": "base", "threads": 1},
        "frames": 3,
    }


@pytest.mark.parametrize("bad", [["model"], ["=x"], ["a=1", "a.b=2"]])
def test_malformed_options_are_refused(bad: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        parse_options(bad)
