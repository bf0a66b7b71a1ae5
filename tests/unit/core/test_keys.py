"""API keys are hashed; provider secrets are encrypted with a key only this installation has."""

from __future__ import annotations

import pytest

from patchbay.core.keys import SecretBox, hash_api_key, new_api_key
from patchbay.errors import InvalidRequest


def test_api_keys_are_random_and_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a != b and a.startswith("pb-")
    assert hash_api_key(a) == hash_api_key(a) != hash_api_key(b)
    assert a not in hash_api_key(a)


def test_secret_box_round_trips_and_refuses_another_secret() -> None:
    token = SecretBox("one").encrypt("sk-live")
    assert "sk-live" not in token
    assert SecretBox("one").decrypt(token) == "sk-live"
    with pytest.raises(InvalidRequest, match="secret key changed"):
        SecretBox("two").decrypt(token)
