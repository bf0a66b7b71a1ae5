"""The hooks a patchbay plugin may implement."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from patchbay.plugins import hookspec

if TYPE_CHECKING:
    from patchbay.channels.base import Channel


class RegisterChannel(Protocol):
    def __call__(self, channel: type[Channel[Any]]) -> None: ...


@hookspec
def register_channels(register: RegisterChannel) -> None:
    """Register channel classes: `register(MyChannel)`."""
