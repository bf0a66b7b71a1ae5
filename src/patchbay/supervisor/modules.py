"""Which processes make up patchbay, from Settings: each module's command and where it answers."""

from __future__ import annotations

from dataclasses import dataclass

from patchbay.config import Settings


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    name: str
    args: tuple[str, ...]  # arguments to `patchbay`
    host: str
    port: int
    priority: int  # lower starts first and stops last

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def modules(settings: Settings) -> list[ModuleSpec]:
    """The modules `patchbay up` runs: the core first, then each channel."""
    return [
        ModuleSpec("core", ("core",), settings.core.host, settings.core.port, 10),
        ModuleSpec("openai", ("channel", "openai"), settings.openai.host, settings.openai.port, 20),
    ]
