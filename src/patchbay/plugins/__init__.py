"""Plugins: channels (and later helpers) register through hooks, built-in ones the same way as
third-party packages, which declare an entry point in the group `patchbay`."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("patchbay")
hookspec = pluggy.HookspecMarker("patchbay")
