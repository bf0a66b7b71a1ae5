"""Settings: the only code that reads environment variables and `patchbay.toml`.

Built once per process by an entry point and passed down; nothing reads the environment at import.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from patchbay.hosts import odd_ipv4
from patchbay.tokens import helper_key

CONFIG_FILE_ENV = "PATCHBAY_CONFIG"


class ServerSettings(BaseModel):
    """Where one HTTP module listens."""

    host: str = "127.0.0.1"
    port: int


class CoreSettings(ServerSettings):
    port: int = 8700
    url: str | None = None  # how other modules reach the core; defaults to host and port
    # Reverse proxies in front of the core (addresses or networks). A request from one comes from
    # the address it names in X-Forwarded-For or Forwarded (api/peers.py); from anywhere else, from
    # its peer, whatever it says.
    trusted_proxies: list[IPvAnyNetwork] = []

    @property
    def base_url(self) -> str:
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")


class ChannelServerSettings(ServerSettings):
    """A built-in channel that listens for HTTP."""

    enabled: bool = True  # `patchbay up` runs it


class OpenAIChannelSettings(ChannelServerSettings):
    port: int = 11435
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout_s: float = 600.0


class WsChannelSettings(ChannelServerSettings):
    """The WebSocket job channel (seed 002) at `ws://host:port/ws/`."""

    port: int = 8765
    max_frame_bytes: int = 1024 * 1024  # a bigger frame from a client closes it (1009)
    send_queue_limit: int = 1000  # frames queued for one client; a burst waits for room
    send_timeout_s: float = 10.0  # a client that leaves the queue full this long is closed (1008)
    auth_timeout_s: float = 10.0  # how long a connection without a key has to send `auth`
    request_timeout_s: float = 600.0  # longest silence accepted on a job's event stream


class WebChannelSettings(ChannelServerSettings):
    """The web chat page at `http://host:port/`, which proxies its API calls to the core."""

    port: int = 8080
    max_body_bytes: int = 32 * 1024 * 1024  # the largest upload (a turn with its files)
    request_timeout_s: float = 600.0  # longest silence accepted on a streamed answer


class JobSettings(BaseModel):
    concurrency: int = 64  # jobs run at once by one core (in-process queue) or one worker
    max_depth: int = 1000  # queued jobs past which new turns are refused (retryable)
    checkpoint_interval_s: float = 1.0  # how often a growing answer is saved
    event_retention_s: float = 120.0  # finished jobs' events kept in memory for resume
    event_retention_max: int = 10_000  # and at most this many finished jobs' (then: the store)
    upstream_timeout_s: float = 300.0  # a model that says nothing for this long fails the job
    store_retry_s: float = 60.0  # how long a finished job waits for an unavailable database
    # How long a turn that waited behind its chat's answer is tried again when the queue refuses
    # it then (full; or the database or RabbitMQ away) before it fails: it was accepted already.
    release_retry_s: float = Field(default=300.0, ge=0)
    workers: int = 2  # worker processes `patchbay up` runs when the queue is RabbitMQ
    queue_name: str = "patchbay.jobs"  # the durable RabbitMQ queue of jobs
    exchange_prefix: str = "patchbay"  # RabbitMQ exchanges: <prefix>.events, <prefix>.control
    stop_grace_s: float = 10.0  # how long a stopping worker lets running jobs finish
    # Workers a job may start on: one that every worker it lands on dies of (a native crash, out
    # of memory) fails once it has stopped this many, instead of going round for ever.
    max_attempts: int = Field(default=3, ge=1)


class LlmLogSettings(BaseModel):
    """The `llm` logs database every model call is written to."""

    enabled: bool = True
    path: Path | None = None  # default: <data_dir>/logs.db
    batch_size: int = 256
    flush_interval_s: float = 0.2


class LocalModelSettings(BaseModel):
    """The embedded default model, run by llama.cpp's engine inside the core."""

    enabled: bool = True
    name: str = "qwen2.5-coder-0.5b"
    gguf_path: Path | None = None  # default: assembled from the packaged chunks into the data dir
    context_size: int = 8192
    parallel: int = 4  # llama.cpp slots: requests served at once
    threads: int | None = None  # default: every core


class InstructionSettings(BaseModel):
    """The instruction API over RabbitMQ (seed 003): its queue and how much runs at once."""

    queue: str = "patchbay.instructions"
    prefetch: int = 32  # instructions one consumer works on at once
    # Generates one sender (API key) has answered at once; as many again wait, the rest are put
    # off in `<queue>.deferred` (up to `timeout_s`, then queue_full), so one sender's flood never
    # holds the others back.
    generates_per_key: int = Field(default=4, ge=1)
    timeout_s: float = 120.0  # how long `publish_message` waits for an answer
    core_retry_s: float = 30.0  # how long the consumer waits for a core that is away
    # Who the consumer is to the core when it holds answers owed (default: its host and queue,
    # the same after a restart); two consumers of one queue on one host need one each.
    owed_holder: str | None = Field(default=None, min_length=1, max_length=200)


class HelperSettings(BaseModel):
    """Helpers: third-party HTTP services that register capabilities with the core."""

    registration_key: SecretStr | None = None  # default: derived from the installation secret
    # Hosts a helper may name as its base URL wherever it registers from (else: its own address).
    allowed_url_hosts: list[str] = []
    max_request_bytes: int = 256 * 1024 * 1024  # the largest file sent to a helper
    max_response_bytes: int = 16 * 1024 * 1024
    breaker_failures: int = 5  # consecutive failures that open a helper's circuit breaker…
    breaker_reset_s: float = 30.0  # …for this long
    retries: int = 2  # further tries of an idempotent capability that failed
    # The built-in to-text helpers `patchbay up` runs (each its own process), and their options,
    # e.g. {"speech": {"model": "tiny.en"}}.
    builtin: list[Literal["documents", "ocr", "speech", "video"]] = [
        "documents",
        "ocr",
        "speech",
        "video",
    ]
    builtin_options: dict[str, dict[str, object]] = {}

    @field_validator("allowed_url_hosts")
    @classmethod
    def _ipv4_written_plainly(cls, hosts: list[str]) -> list[str]:
        """An IPv4 address spelled as 127.1 or 2130706433 would be taken for a name, and no helper
        names it in its URL (check_base_url refuses it there)."""
        for host in hosts:
            if (canonical := odd_ipv4(host)) is not None:
                raise ValueError(f"{host} is the IPv4 address {canonical}: write it as {canonical}")
        return hosts

    def key(self, secret: str) -> str:
        if self.registration_key is not None:
            return self.registration_key.get_secret_value()
        return helper_key(secret)


class StatusSettings(BaseModel):
    heartbeat_interval_s: float = 2.0  # how often each module reports to the core
    down_after_s: float = 6.0  # a module silent this long is shown down


class LogSettings(BaseModel):
    level: str = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(BaseSettings):
    """Everything patchbay can be told, from `PATCHBAY_*` variables and an optional TOML file."""

    model_config = SettingsConfigDict(
        env_prefix="PATCHBAY_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=lambda: platformdirs.user_data_path("patchbay"))
    database_url: str | None = None  # default: SQLite in the data directory
    secret_key: SecretStr | None = None  # default: generated once into the data directory
    admin_key: SecretStr | None = None  # the first admin's API key, used on first start only
    api_key: SecretStr | None = None  # the key the CLI presents to the core
    queue: Literal["memory", "rabbitmq"] = "memory"  # rabbitmq: jobs go to `patchbay worker`s
    rabbitmq_url: str | None = None  # set: the instruction consumer runs (and RabbitMQ is used)
    core: CoreSettings = CoreSettings()
    openai: OpenAIChannelSettings = OpenAIChannelSettings()
    ws: WsChannelSettings = WsChannelSettings()
    web: WebChannelSettings = WebChannelSettings()
    jobs: JobSettings = JobSettings()
    llm_log: LlmLogSettings = LlmLogSettings()
    local_model: LocalModelSettings = LocalModelSettings()
    log: LogSettings = LogSettings()
    status: StatusSettings = StatusSettings()
    instructions: InstructionSettings = InstructionSettings()
    helpers: HelperSettings = HelperSettings()
    channels: dict[str, dict[str, object]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get(CONFIG_FILE_ENV, "patchbay.toml")
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_file)
        return (init_settings, env_settings, toml, file_secret_settings)

    @model_validator(mode="after")
    def _rabbitmq_queue_needs_a_broker(self) -> Settings:
        if self.queue == "rabbitmq" and not self.rabbitmq_url:
            raise ValueError("PATCHBAY_QUEUE=rabbitmq needs PATCHBAY_RABBITMQ_URL (amqp://…)")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'patchbay.db'}"

    @property
    def llm_log_path(self) -> Path:
        return self.llm_log.path or self.data_dir / "logs.db"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def installation_secret(self) -> str:
        """`secret_key`, or the one generated into the data directory on first use (mode 0600).

        Every module of an installation shares it: it encrypts provider keys at rest and signs
        the modules' heartbeats.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()


def environment() -> dict[str, str]:
    """The process environment, for values Settings names indirectly (a provider's `api_key_env`)."""
    return dict(os.environ)
