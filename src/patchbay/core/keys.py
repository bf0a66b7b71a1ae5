"""API keys and the secret key: generated, hashed, encrypted."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

from patchbay.errors import InvalidRequest

KEY_PREFIX = "pb-"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: nothing to brute-force, nothing to salt.
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:10]


class SecretBox:
    """Encrypts values at rest (provider API keys) with a key derived from the secret key."""

    def __init__(self, secret: str) -> None:
        digest = hashlib.sha256(b"patchbay:secretbox:" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise InvalidRequest(
                "a stored secret cannot be decrypted: the secret key changed; set the key again"
            ) from exc
