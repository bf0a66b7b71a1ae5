"""ULIDs sort by creation time and do not collide."""

from __future__ import annotations

import time

from patchbay.ids import new_id


def test_ids_are_26_characters_and_unique() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert {len(i) for i in ids} == {26}


def test_later_ids_sort_after_earlier_ones() -> None:
    first = new_id()
    time.sleep(0.002)
    assert new_id() > first
