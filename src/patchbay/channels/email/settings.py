"""The email channel's settings: where it listens for SMTP, the address it answers as, the relay
its replies go through, optional IMAP polling, and the limits that keep bad mail out."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from patchbay.channels.base import ChannelSettings
from patchbay.channels.owed import OwedSettings


class RelaySettings(BaseModel):
    """The SMTP server replies are handed to (a smarthost, or the local MTA)."""

    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_s: float = 30.0


class ImapSettings(BaseModel):
    """A mailbox to poll for unread mail, besides (or instead of) receiving it by SMTP."""

    host: str
    port: int = 993
    ssl: bool = True  # IMAPS; with False, plain IMAP upgraded by STARTTLS when `starttls`
    starttls: bool = False
    user: str
    password: SecretStr
    folder: str = "INBOX"
    interval_s: float = Field(default=60.0, gt=0)
    batch: int = Field(default=50, ge=1)  # mails read per poll


class EmailSettings(ChannelSettings, OwedSettings):
    port: int | None = 8025  # HTTP, for /healthz
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    address: str = "patchbay@localhost"  # the only recipient accepted; replies come from it
    relay: RelaySettings = RelaySettings()
    imap: ImapSettings | None = None
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_mails_per_minute: int = Field(default=10, ge=1)  # per sender; beyond it, 451
    # A cheap guard against forged From headers: the envelope sender (MAIL FROM) must be the
    # From address. Turn off behind forwarders that rewrite the envelope (SRS).
    require_envelope_match: bool = True
    reply_tries: int = Field(default=5, ge=1)  # the relay is tried this often, backing off
    reply_retry_s: float = Field(default=2.0, ge=0)  # the first wait between tries
