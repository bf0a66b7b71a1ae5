"""An error of a library that only the child of an `Isolated` loads (as markitdown is)."""

from __future__ import annotations


class ForeignError(Exception):
    pass
