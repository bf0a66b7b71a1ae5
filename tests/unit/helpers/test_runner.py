"""How `run_helper` serves a helper."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from pydantic import BaseModel

from patchbay.helpers.runner import Serving, run_helper
from patchbay.helpers.sdk import Helper


class Text(BaseModel):
    text: str


def test_a_helper_is_served_without_trusting_proxy_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn's default believes X-Forwarded-For from 127.0.0.1; the core and channels turn it
    off, and so does a helper."""
    helper = Helper("echo")

    @helper.tool
    async def echo(said: Text) -> Text:
        """Says it back."""
        return said

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda _app, **options: served.update(options))
    run_helper(helper, Serving(port=8899))
    assert served["proxy_headers"] is False
    assert (served["host"], served["port"]) == ("127.0.0.1", 8899)
