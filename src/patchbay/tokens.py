"""The token modules of one installation present to the core, derived from the shared secret key."""

from __future__ import annotations

import hashlib
import hmac


def module_token(secret: str) -> str:
    return hmac.new(secret.encode(), b"patchbay-module", hashlib.sha256).hexdigest()


def valid_module_token(secret: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(module_token(secret).encode(), token.encode())


def helper_key(secret: str) -> str:
    """The key helpers present to register, when Settings names none: built-in helpers started
    by `patchbay up` share the installation's secret, so they know it."""
    return "pbh-" + hmac.new(secret.encode(), b"patchbay-helper", hashlib.sha256).hexdigest()
