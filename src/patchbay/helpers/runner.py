"""Running a helper: find it by `module:attribute`, serve it with uvicorn, registered with a core."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from patchbay.helpers.app import create_app
from patchbay.helpers.registration import DEFAULT_INTERVAL_S, Registration
from patchbay.helpers.sdk import Helper


@dataclass(frozen=True, slots=True)
class Serving:
    """Where a helper listens and which core, if any, it registers with."""

    host: str = "127.0.0.1"
    port: int = 8800
    url: str | None = None  # how the core reaches it; default http://host:port
    core_url: str | None = None  # None: serve without registering
    key: str | None = None  # the helper registration key
    heartbeat_s: float = DEFAULT_INTERVAL_S  # unless the core's answer names another interval

    @property
    def base_url(self) -> str:
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")


def load_helper(spec: str) -> Helper:
    """The `Helper` named by `module:attribute`; an attribute that is a factory is called.

    Raises:
        ValueError: the spec is malformed or names something that is not a helper.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r}: write it as module:attribute, e.g. my_helpers:helper")
    module = importlib.import_module(module_name)
    found = getattr(module, attribute, None)
    if found is None:
        raise ValueError(f"{module_name} has no attribute {attribute!r}")
    if not isinstance(found, Helper) and callable(found):
        found = found()
    if not isinstance(found, Helper):
        raise ValueError(f"{spec} is a {type(found).__name__}, not a patchbay.helpers.Helper")
    return found


def build_app(helper: Helper, serving: Serving) -> Starlette:
    """The helper's app, registering itself when `serving` names a core and a key."""
    registration = None
    if serving.core_url is not None:
        if serving.key is None:
            raise ValueError("registering with a core needs the helper registration key")
        manifest = helper.manifest(serving.base_url)
        registration = Registration(
            serving.core_url, key=serving.key, manifest=manifest, interval_s=serving.heartbeat_s
        )
    return create_app(helper, base_url=serving.base_url, registration=registration)


def run_helper(helper: Helper, serving: Serving, *, log_level: str = "info") -> None:
    """Serve `helper` until SIGINT/SIGTERM; it deregisters on the way out."""
    app = build_app(helper, serving)
    if not logging.getLogger().handlers:  # run from a script, not from the patchbay CLI
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    uvicorn.run(
        app,
        host=serving.host,
        port=serving.port,
        log_level=log_level,
        lifespan="on",
        log_config=None,  # logging is configured above or by the entry point
        # As the core's and the channels' servers: uvicorn's default would take X-Forwarded-For
        # (and -Proto) from any local process as the client's address, and a helper reads neither.
        proxy_headers=False,
    )
