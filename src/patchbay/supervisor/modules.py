"""Which processes make up patchbay, from Settings: each module's command and where it answers."""

from __future__ import annotations

from dataclasses import dataclass

from patchbay.channels.instructions import address
from patchbay.config import Settings


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    name: str
    args: tuple[str, ...]  # arguments to `patchbay`
    host: str
    port: int | None  # None: no HTTP port, so supervisord's RUNNING is its readiness
    priority: int  # lower starts first and stops last
    address: str | None = None  # where a module without HTTP listens, shown as its URL

    @property
    def url(self) -> str:
        return self.address or f"http://{self.host}:{self.port}"


def modules(settings: Settings) -> list[ModuleSpec]:
    """The modules `patchbay up` runs: the core first, then the workers (with RabbitMQ), then
    each channel that is enabled."""
    specs = [ModuleSpec("core", ("core",), settings.core.host, settings.core.port, 10)]
    for name, channel in (("openai", settings.openai), ("ws", settings.ws), ("web", settings.web)):
        if channel.enabled:
            specs.append(ModuleSpec(name, ("channel", name), channel.host, channel.port, 20))
    if settings.queue == "rabbitmq" and settings.rabbitmq_url:
        jobs = address(settings.rabbitmq_url, settings.jobs.queue_name)
        for number in range(1, settings.jobs.workers + 1):
            name = f"worker-{number}"
            specs.append(ModuleSpec(name, ("worker", "--name", name), "", None, 15, address=jobs))
    if settings.rabbitmq_url:
        where = address(settings.rabbitmq_url, settings.instructions.queue)
        specs.append(
            ModuleSpec("instructions", ("channel", "instructions"), "", None, 20, address=where)
        )
    return specs + plugin_channels(settings) + builtin_helpers(settings)


def builtin_helpers(settings: Settings) -> list[ModuleSpec]:
    """The built-in to-text helpers the settings name, each its own process."""
    from patchbay.helpers.builtin import BUILTINS

    return [
        ModuleSpec(
            f"helper-{name}", ("helper", "builtin", name), "127.0.0.1", BUILTINS[name].port, 30
        )
        for name in settings.helpers.builtin
    ]


def plugin_channels(settings: Settings) -> list[ModuleSpec]:
    """Channels registered through the plugin hook that the settings enable."""
    if not settings.channels:
        return []
    from patchbay.channels.base import channel_settings
    from patchbay.plugins.manager import build_plugin_manager, channel_classes

    found = channel_classes(build_plugin_manager())
    specs = []
    for name, raw in settings.channels.items():
        if name in found:
            own = channel_settings(found[name], dict(raw))
            if own.enabled:
                specs.append(ModuleSpec(name, ("channel", name), own.host, own.port, 20))
    return specs
