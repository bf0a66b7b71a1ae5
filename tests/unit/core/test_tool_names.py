"""Every capability a model is offered has a name of its own, within OpenAI's 64 characters."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from patchbay.config import HelperSettings
from patchbay.core.helper_rules import tool_names
from patchbay.core.helpers import HelperRegistry
from patchbay.core.mcp import capability_names
from patchbay.schemas.helpers import Capability, HelperManifest
from patchbay.store import helpers as rows
from patchbay.store import users as user_rows
from patchbay.store.db import Database

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_short_names_are_helper_and_capability() -> None:
    assert tool_names([("weather", "forecast"), ("files", "read")]) == [
        "weather__forecast",
        "files__read",
    ]


def test_names_that_would_be_one_are_kept_apart() -> None:
    long_helper = "h" * 60
    pairs = [
        ("a", "b__c"),
        ("a__b", "c"),  # the same `a__b__c`
        (long_helper, "forecast"),
        (long_helper, "forecast_hourly"),  # the same once cut to 64
    ]
    names = tool_names(pairs)
    assert names[0] == "a__b__c"
    assert len(set(names)) == len(names)
    assert all(FUNCTION_NAME.match(name) for name in names), names
    assert tool_names(pairs) == names  # the same names on every turn


def test_a_name_that_is_another_pairs_cut_name_already_keeps_both_apart() -> None:
    digest = hashlib.sha256(b"a__b/c").hexdigest()[:8]
    pairs = [("a", f"b__c_{digest}"), ("a", "b__c"), ("a__b", "c")]  # the third's cut name is
    names = tool_names(pairs)  # the first's own: a helper can offer a capability named so
    assert names[0] == f"a__b__c_{digest}"
    assert len(set(names)) == len(names), names
    assert all(FUNCTION_NAME.match(name) for name in names), names


def test_mcp_tools_whose_names_become_one_get_their_own() -> None:
    names = capability_names(["Get.Weather", "get_weather", "get-weather", "x" * 70, "X" * 70])
    assert names[:3] == ["get_weather", "get_weather_2", "get-weather"]
    assert names[3] == "x" * 64 and names[4] == "x" * 62 + "_2"


async def test_a_tool_keeps_its_name_when_one_it_was_kept_apart_from_is_unusable(
    tmp_path: Path,
) -> None:
    """The model sees earlier turns' calls by name: one name must not move to another tool
    because a helper went down, was disabled or is not this user's."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await db.migrate()
    try:
        registry = HelperRegistry(db, HelperSettings(), key="k", down_after_s=30)
        for helper, capability in [("a", "b__c"), ("a__b", "c")]:  # both a__b__c
            tool = Capability(name=capability, description="A tool.")
            manifest = HelperManifest(
                name=helper, base_url=f"http://127.0.0.1:1/{helper}", capabilities=[tool]
            )
            await registry.register(manifest, peer="127.0.0.1")
        async with db.begin() as conn:
            user = await user_rows.insert_user(conn, name="ann", role="user", profile={})
        before = [tool.name for tool in await registry.tools_for(user.id, [])]
        async with db.begin() as conn:
            await rows.update_helper(conn, "a", {"enabled": False})
        fresh = HelperRegistry(db, HelperSettings(), key="k", down_after_s=30)  # nothing cached
        after = [tool.name for tool in await fresh.tools_for(user.id, [])]
        await registry.close()
        await fresh.close()
    finally:
        await db.close()
    assert before[0] == "a__b__c" and after == before[1:]
