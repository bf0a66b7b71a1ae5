"""The plugin manager: built-in plugins plus every installed package's `patchbay` entry point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from patchbay.plugins import hookspecs

if TYPE_CHECKING:
    from patchbay.channels.base import Channel

# Built-in channel modules: they register through the same hook as third-party packages.
BUILTIN: tuple[str, ...] = (
    "patchbay.channels.email",
    "patchbay.channels.sms.channel",
    "patchbay.channels.telegram.channel",
    "patchbay.channels.voice.channel",
    "patchbay.channels.xmpp.channel",
)


def build_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    manager = pluggy.PluginManager("patchbay")
    manager.add_hookspecs(hookspecs)
    for name in BUILTIN:
        manager.register(__import__(name, fromlist=["_"]), name)
    if entry_points:
        manager.load_setuptools_entrypoints("patchbay")
    return manager


def channel_classes(manager: pluggy.PluginManager) -> dict[str, type[Channel[Any]]]:
    """Every registered channel, by name."""
    found: dict[str, type[Channel[Any]]] = {}

    def register(channel: type[Channel[Any]]) -> None:
        found[channel.name] = channel

    manager.hook.register_channels(register=register)
    return found
