"""The schema, as SQLAlchemy Core tables; migrations/ brings a database to it without losing rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores no zone, so add it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[str]:
    return Column("id", String(26), primary_key=True)


def _number() -> Column[int]:
    """A short integer id the database assigns (seed 003's clients say `"chat_id": 1`)."""
    return Column("number", BigInteger, FetchedValue(), unique=True)


def _created() -> Column[object]:
    return Column("created_at", UTCDateTime(), nullable=False)


users = Table(
    "users",
    metadata,
    _id(),
    _number(),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("profile", JSON, nullable=False),
    Column("instruction_recording", Boolean, nullable=False, default=False),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    Column("user_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    _created(),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
)

identities = Table(
    "identities",
    metadata,
    _id(),
    Column("user_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("address", String(500), nullable=False),
    _created(),
    UniqueConstraint("channel", "address", name="uq_identities_channel_address"),
)

providers = Table(
    "providers",
    metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("api_base", String(2000)),
    Column("api_key_encrypted", Text),
    Column("api_key_env", String(200)),
    Column("options", JSON, nullable=False),
    _created(),
)

models = Table(
    "models",
    metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column(
        "provider_id", String(26), ForeignKey("providers.id", ondelete="CASCADE"), nullable=False
    ),
    Column("upstream_model", String(500), nullable=False),
    Column("options", JSON, nullable=False),
    Column("is_default", Boolean, nullable=False, default=False),
    _created(),
)

chats = Table(
    "chats",
    metadata,
    _id(),
    _number(),
    Column("owner_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(500)),
    Column("channel", String(100), nullable=False),
    Column("thread", String(500)),
    Column("model", String(200)),
    Column("current_message_id", String(26)),  # the leaf of the branch being shown
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_chats_owner_updated", "owner_id", "updated_at"),
    Index("ix_chats_owner_channel_thread", "owner_id", "channel", "thread"),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    _number(),
    Column("chat_id", String(26), ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("parent_id", String(26), ForeignKey("messages.id", ondelete="CASCADE")),
    Column("role", String(20), nullable=False),
    Column("author_id", String(26)),  # who said it, in a chat with several members
    Column("content", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("model", String(200)),
    # A hash of the conversation from the root to this message, so a client that sends the
    # whole history again continues the stored chat.
    Column("prefix_hash", String(64)),
    Column("attachments", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("ttft_ms", Float),
    Column("duration_ms", Float),
    Column("error", Text),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_messages_chat", "chat_id", "id"),
    Index("ix_messages_prefix_hash", "prefix_hash"),
    Index("ix_messages_parent", "parent_id"),
)

chat_members = Table(
    "chat_members",
    metadata,
    Column("chat_id", String(26), ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    _created(),
    Index("ix_chat_members_user", "user_id"),
)

instruction_records = Table(
    "instruction_records",
    metadata,
    _id(),
    Column("user_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(100)),
    Column("transport", String(20), nullable=False),  # http or rabbitmq
    Column("payload", JSON),
    Column("status", String(20), nullable=False),  # success or error
    Column("error_code", String(100)),
    Column("latency_ms", Float, nullable=False),
    _created(),
    Index("ix_instruction_records_user", "user_id", "id"),
)

assistants = Table(
    "assistants",
    metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text),
    Column("template", JSON, nullable=False),  # an AssistantTemplate
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
)

helpers = Table(
    "helpers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("manifest", JSON, nullable=False),  # a HelperManifest
    # The host the name belongs to (its base URL's; loopback names as "localhost"): only that
    # host registers, heartbeats or removes it with the helper key.
    Column("host", String(255), nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False),
    Column("allowed_roles", JSON),  # None: everyone
    Column("allowed_users", JSON),
    Column("registered_at", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime()),
)

pairings = Table(
    "pairings",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("channel", String(100), nullable=False),
    Column("address", String(500), nullable=False),
    Column("display_name", String(200)),
    _created(),
    Column("expires_at", UTCDateTime(), nullable=False),
    UniqueConstraint("channel", "address", name="uq_pairings_channel_address"),
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    Column("chat_id", String(26), ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(26), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("model", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("queue", String(20), nullable=False),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_seq", Integer),  # the number of the job's terminal event, once it has one
    _created(),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    # What a waiting job runs with once it is queued, perhaps by another core (SQL NULL for any
    # other job: its options travel with it in the queue).
    Column("options", JSON(none_as_null=True)),
    Column("stream", Boolean),
    Index("ix_jobs_status", "status"),
)

# The channel's id of each incoming message a turn was made of: the same message delivered again
# (after a channel restarted, say) is refused instead of answered twice. Per user, so nobody can
# claim another sender's ids ahead of them. With a `reply` (what the channel needs to send the
# answer back), the answer is owed to the channel until it says it sent it (`answered_at`); one
# channel process at a time holds it (a lease), so processes on many machines send it once.
deliveries = Table(
    "deliveries",
    metadata,
    Column("user_id", String(26), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(100), primary_key=True),
    Column("delivery_id", String(300), primary_key=True),
    Column("message_id", String(26), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", String(26), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    _created(),
    Column("reply", JSON(none_as_null=True)),  # SQL NULL, not JSON null, when there is none
    Column("answered_at", UTCDateTime()),
    Column("held_by", String(200)),  # the channel process sending the owed answer…
    Column("held_until", UTCDateTime()),  # …as long as it renews this lease
    Index("ix_deliveries_owed", "channel", "answered_at"),
)
