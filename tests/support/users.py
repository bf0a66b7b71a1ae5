"""A user as the core hands one to services and channels, for unit tests."""

from __future__ import annotations

from datetime import UTC, datetime

from patchbay.schemas.users import UserRead


def a_user(user_id: str = "u1", name: str = "ann") -> UserRead:
    return UserRead(
        id=user_id,
        number=1,
        name=name,
        role="user",
        profile={},
        instruction_recording=False,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
