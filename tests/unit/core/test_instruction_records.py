"""What an instruction record keeps: everything but secrets, however their fields are spelled."""

from __future__ import annotations

from patchbay.core.instructions.executor import redacted


def test_secrets_are_masked_however_their_fields_are_spelled() -> None:
    instruction = {
        "type": "LLM_PROVIDER_CREATE",
        "api_key": "sk-1",
        "apiKey": "sk-2",
        "options": {
            "headers": {"Authorization": "Bearer sk-3", "X-Api-Key": "sk-4"},
            "access_token": "t",
            "client_secret": "s",
            "key": "k",
            "max_tokens": 100,  # a limit, not a token
            "keyboard": "qwerty",
        },
        "users": [{"name": "ann", "password": "hunter2"}],
        "token": "",  # nothing to hide
        "api_keys": ["sk-5", "sk-6"],
        "secrets": {"a": 1},
        "passphrase": "p",
        "private_key_pem": "-----BEGIN",
    }
    assert redacted(instruction) == {
        "type": "LLM_PROVIDER_CREATE",
        "api_key": "***",
        "apiKey": "***",
        "options": {
            "headers": {"Authorization": "***", "X-Api-Key": "***"},
            "access_token": "***",
            "client_secret": "***",
            "key": "***",
            "max_tokens": 100,
            "keyboard": "qwerty",
        },
        "users": [{"name": "ann", "password": "***"}],
        "token": "",
        "api_keys": "***",
        "secrets": "***",
        "passphrase": "***",
        "private_key_pem": "***",
    }
