"""Which database errors mean the database cannot be reached now (retry), not a bug (raise)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from patchbay.errors import StoreUnavailable

logger = logging.getLogger(__name__)

_OUTAGE_HINTS = (
    "locked",
    "unable to open",
    "disk i/o",
    "connect",
    "closed",
    "terminat",
    "shutdown",
    "disk is full",  # SQLite's "database or disk is full": writes may go again once there is room
)


def is_outage(exc: BaseException) -> bool:
    """Whether an error means the database cannot be reached now."""
    if isinstance(exc, TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    text = str(exc).lower()
    return isinstance(exc, OperationalError | InterfaceError) and any(
        h in text for h in _OUTAGE_HINTS
    )


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The error to give callers for an outage; says what happened in the log."""
    logger.warning("database unavailable: %s", str(exc).splitlines()[0][:200])
    return StoreUnavailable("the database is unavailable right now; try again shortly")
