"""One store suite, run against SQLite and against PostgreSQL: users, keys, catalog, chats, jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from patchbay.config import HelperSettings, Settings
from patchbay.core.helpers import HelperRegistry
from patchbay.core.hub import Hub
from patchbay.errors import (
    AuthenticationFailed,
    ChatNotFound,
    Conflict,
    DuplicateDelivery,
    ModelNotFound,
    PermissionDenied,
)
from patchbay.ids import new_id
from patchbay.schemas.catalog import ModelCreate, ModelUpdate, ProviderCreate
from patchbay.schemas.chats import ChatCreate, ChatUpdate
from patchbay.schemas.jobs import JobEvent
from patchbay.schemas.turns import MessageIn, Regenerate, TurnCreate, TurnRead
from patchbay.schemas.users import UserCreate, UserRead, UserUpdate
from patchbay.store import chats as chat_rows
from patchbay.store import jobs as job_rows
from patchbay.store import tables
from patchbay.store import users as user_rows
from patchbay.store.chats import ChatRecord
from patchbay.store.db import Database, alembic_config
from tests.conftest import ADMIN_KEY, make_settings
from tests.support.databases import postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    if request.param == "sqlite":
        async for started in _started(make_settings(tmp_path)):
            yield started
        return
    async with postgres_url() as url:
        async for started in _started(make_settings(tmp_path, database_url=url)):
            yield started


async def _started(settings: Settings) -> AsyncIterator[Hub]:
    hub = Hub(settings)
    await hub.prepare()
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


async def admin(hub: Hub) -> UserRead:
    return await hub.auth.authenticate(ADMIN_KEY)


async def add_echo(hub: Hub) -> None:
    await hub.catalog.add_provider(ProviderCreate(name="plugins", kind="llm"))
    await hub.catalog.add_model(ModelCreate(name="echo", provider="plugins", is_default=True))


async def outcome(hub: Hub, job_id: str) -> JobEvent:
    events = [event async for batch in hub.jobs.follow(job_id) for event in batch]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return events[-1]


async def test_prepare_is_idempotent_and_bootstraps_once(hub: Hub) -> None:
    assert await hub.prepare() is None
    users = await hub.users.list_users(await admin(hub))
    assert [(u.name, u.role) for u in users] == [("admin", "admin")]
    async with hub.db.connect() as conn:
        stored = (await conn.execute(select(tables.api_keys.c.key_hash))).scalars().all()
    assert ADMIN_KEY not in stored and len(stored) == 1


async def test_users_and_keys(hub: Hub) -> None:
    root = await admin(hub)
    alice = await hub.users.create(root, UserCreate(name="alice"))
    assert (root.number, alice.number) == (1, 2)
    assert (await hub.users.get(root, 2)).id == alice.id
    with pytest.raises(Conflict):
        await hub.users.create(root, UserCreate(name="alice"))
    with pytest.raises(PermissionDenied):
        await hub.users.create(alice, UserCreate(name="bob"))
    with pytest.raises(PermissionDenied):
        await hub.users.update(alice, alice.id, UserUpdate(role="admin"))
    assert [u.name for u in await hub.users.list_users(alice)] == ["alice"]
    issued = await hub.users.issue_key(root, alice.id, name="laptop")
    assert (await hub.auth.authenticate(issued.key)).id == alice.id
    await hub.users.revoke_key(issued.id, actor=root)
    with pytest.raises(AuthenticationFailed):
        await hub.auth.authenticate(issued.key)
    renamed = await hub.users.update(root, alice.id, UserUpdate(name="alicia"))
    assert renamed.name == "alicia"
    await hub.users.delete(root, alice.id)
    assert [u.name for u in await hub.users.list_users(root)] == ["admin"]
    assert await hub.users.list_keys(alice.id) == []
    newer = await hub.users.create(root, UserCreate(name="carol"))
    assert newer.number is not None and newer.number > 2  # never reused (PostgreSQL may skip some)


async def test_provider_keys_are_encrypted_and_never_returned(hub: Hub) -> None:
    created = await hub.catalog.add_provider(
        ProviderCreate(
            name="up", kind="openai", api_base="http://127.0.0.1:1/v1", api_key="sk-secret"
        )
    )
    assert created.has_api_key and "sk-secret" not in created.model_dump_json()
    async with hub.db.connect() as conn:
        raw = (await conn.execute(select(tables.providers.c.api_key_encrypted))).scalar_one()
    assert raw and "sk-secret" not in raw
    await hub.catalog.add_model(ModelCreate(name="m", provider="up"))
    target = await hub.catalog.resolve("m")
    assert target.api_key == "sk-secret"


async def test_default_model_follows_the_flag(hub: Hub) -> None:
    await add_echo(hub)
    assert (await hub.catalog.resolve("default")).name == "echo"
    await hub.catalog.add_model(
        ModelCreate(name="echo2", provider="plugins", upstream_model="echo")
    )
    await hub.catalog.update_model("echo2", ModelUpdate(is_default=True))
    assert [m.name for m in await hub.catalog.list_models() if m.is_default] == ["echo2"]
    assert (await hub.catalog.resolve(None)).name == "echo2"
    with pytest.raises(ModelNotFound):
        await hub.catalog.resolve("missing")


async def test_turn_is_stored_with_its_answer(hub: Hub) -> None:
    await add_echo(hub)
    user = await admin(hub)
    turn = await hub.turns.start(
        user, TurnCreate(text='{"raw": "pong"}', thread="t1", channel="test")
    )
    done = await outcome(hub, turn.job_id)
    assert (done.type, done.content) == ("done", "pong")
    messages = await hub.chats.messages(user, turn.chat_id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", '{"raw": "pong"}', "complete"),
        ("assistant", "pong", "complete"),
    ]
    assert messages[1].usage.output_tokens == 1
    again = await hub.turns.start(
        user, TurnCreate(text='{"raw": "two"}', thread="t1", channel="test")
    )
    assert again.chat_id == turn.chat_id
    await outcome(hub, again.job_id)
    assert len(await hub.chats.messages(user, turn.chat_id)) == 4


async def test_a_job_running_elsewhere_is_followed_once_its_events_come(hub: Hub) -> None:
    # Jobs this core has no events of (a worker ran them before this core started): one whose
    # events come later, one that ends in the store without another event.
    await add_echo(hub)
    user = await admin(hub)
    turn = await hub.turns.start(user, TurnCreate(text='{"raw": "pong"}'))
    await outcome(hub, turn.job_id)
    talking, silent = new_id(), new_id()

    def running_elsewhere(conn: Connection) -> None:
        for job_id in (talking, silent):
            row = job_rows.job_row(
                id=job_id,
                chat_id=turn.chat_id,
                message_id=turn.assistant_message_id,
                user_id=user.id,
                model="echo",
                queue="elsewhere",
                now=datetime.now(UTC),
            )
            job_rows.insert_job(conn, {**row, "status": "running"})

    await hub.db.write(running_elsewhere)

    async def follow(job_id: str) -> list[tuple[int, str, str | None]]:
        batches = hub.jobs.follow(job_id)
        return [(e.seq, e.type, e.delta or e.content) async for batch in batches for e in batch]

    listeners = [asyncio.create_task(follow(job_id)) for job_id in (talking, silent)]
    await asyncio.sleep(0.3)
    assert not any(listener.done() for listener in listeners)  # waiting, not ended empty
    await hub.bus.publish(JobEvent(job_id=talking, seq=7, type="running", delta="it"))
    await hub.bus.publish(JobEvent(job_id=talking, seq=8, type="done", content="all of it"))
    assert await asyncio.wait_for(listeners[0], 5) == [
        (7, "running", "all of it"),
        (8, "done", "all of it"),
    ]
    await hub.db.write(
        lambda conn: job_rows.update_job(conn, silent, status="failed", error="lost", last_seq=4)
    )
    # Its answer so far (the message it shares with the first turn: "pong") as one token first.
    assert await asyncio.wait_for(listeners[1], 10) == [
        (3, "running", "pong"),
        (4, "failed", "pong"),
    ]


async def test_history_continues_a_chat_only_for_its_owner(hub: Hub) -> None:
    await add_echo(hub)
    owner = await admin(hub)
    first = await hub.turns.start(owner, TurnCreate(text='{"raw": "a1"}'))
    await outcome(hub, first.job_id)
    history = [
        MessageIn(role="user", content='{"raw": "a1"}'),
        MessageIn(role="assistant", content="a1"),
    ]
    second = await hub.turns.start(owner, TurnCreate(text="next", history=history))
    assert second.chat_id == first.chat_id
    other = await hub.users.create(owner, UserCreate(name="other"))
    third = await hub.turns.start(other, TurnCreate(text="next", history=history))
    assert third.chat_id != first.chat_id
    with pytest.raises(ChatNotFound):
        await hub.chats.messages(other, first.chat_id)


async def test_unfinished_jobs_are_failed_on_recovery(hub: Hub) -> None:
    await add_echo(hub)
    user = await admin(hub)
    turn = await hub.turns.start(user, TurnCreate(text="x"))
    await outcome(hub, turn.job_id)
    async with hub.db.begin() as conn:
        await conn.execute(tables.jobs.update().values(status="running"))
    await hub.jobs.recover(hub.queue.name)
    job = await hub.jobs.job(user, turn.job_id)
    assert job.status == "failed" and job.error and "restarted" in job.error
    assert (await hub.chats.messages(user, turn.chat_id))[-1].status == "failed"


async def test_a_delivery_is_one_turn_even_when_it_comes_ten_times_at_once(hub: Hub) -> None:
    await add_echo(hub)
    ann = await admin(hub)
    sms = TurnCreate(channel="sms", thread="+15550001", text="hi", delivery_id="SM1")
    results = await asyncio.gather(
        *[hub.turns.start(ann, sms) for _ in range(10)], return_exceptions=True
    )
    (taken,) = [r for r in results if isinstance(r, TurnRead)]
    refused = [r for r in results if isinstance(r, DuplicateDelivery)]
    assert len(refused) == 9, results
    assert {(r.chat_id, r.message_id, r.job_id) for r in refused} == {
        (taken.chat_id, taken.user_message_id, taken.job_id)
    }
    with pytest.raises(DuplicateDelivery):  # and later
        await hub.turns.start(ann, sms)
    (chat,) = await hub.chats.list_chats(ann, limit=10, before=None)
    assert [m.role for m in await hub.chats.messages(ann, chat.id)] == ["user", "assistant"]
    # the id is the channel's, and the sender's: elsewhere it is another message
    await hub.turns.start(ann, sms.model_copy(update={"channel": "telegram"}))
    bob = await hub.users.create(ann, UserCreate(name="bob"))
    await hub.turns.start(bob, sms)
    await hub.chats.delete(ann, chat.id)  # its deliveries go with it


async def test_a_regenerate_asked_again_is_one_answer(hub: Hub) -> None:
    await add_echo(hub)
    ann = await admin(hub)
    turn = await hub.turns.start(ann, TurnCreate(text="hi", channel="web", delivery_id="m1"))
    await outcome(hub, turn.job_id)
    again = Regenerate(channel="web", delivery_id="r1")
    results = await asyncio.gather(
        *[hub.turns.regenerate(ann, turn.assistant_message_id, again) for _ in range(5)],
        return_exceptions=True,
    )
    (taken,) = [r for r in results if isinstance(r, TurnRead)]
    refused = [r for r in results if isinstance(r, DuplicateDelivery)]
    assert len(refused) == 4, results
    assert {(r.chat_id, r.message_id, r.job_id) for r in refused} == {
        (taken.chat_id, turn.user_message_id, taken.job_id)
    }
    await outcome(hub, taken.job_id)
    with pytest.raises(DuplicateDelivery) as later:  # and later, asked of the new answer too
        await hub.turns.regenerate(ann, taken.assistant_message_id, again)
    assert later.value.job_id == taken.job_id
    assert later.value.message.startswith("web asked for this answer again before;")
    answers = (await hub.chats.messages(ann, turn.chat_id))[-1].sibling_ids
    assert answers == [turn.assistant_message_id, taken.assistant_message_id]
    # A regenerate's ids and a message's are apart, and each channel's its own.
    elsewhere = [
        hub.turns.regenerate(ann, turn.user_message_id, again.model_copy(update=update))
        for update in ({"delivery_id": "m1"}, {"channel": "telegram"})
    ]
    for started in await asyncio.gather(*elsewhere):
        await outcome(hub, started.job_id)
    message = TurnCreate(text="more", channel="web", chat_id=turn.chat_id, delivery_id="r1")
    await outcome(hub, (await hub.turns.start(ann, message)).job_id)
    with pytest.raises(ValueError, match="does not end in ':regenerate'"):
        TurnCreate(text="hi", channel="web:regenerate", delivery_id="r1")


async def test_migrations_keep_existing_rows(hub: Hub) -> None:
    await add_echo(hub)
    await hub.db.migrate()
    async with hub.db.connect() as conn:
        count = (await conn.execute(text("select count(*) from models"))).scalar_one()
        revision = (
            await conn.execute(text("select version_num from alembic_version"))
        ).scalar_one()
    assert count == 1
    assert revision == "0011"


async def test_chat_members_regenerate_and_branches(hub: Hub) -> None:
    await add_echo(hub)
    root = await admin(hub)
    bob = await hub.users.create(root, UserCreate(name="bob"))
    carol = await hub.users.create(root, UserCreate(name="carol"))
    chat = await hub.chats.create(root, ChatCreate(title="team", members=["bob"]))
    assert (chat.number, chat.members) == (1, [bob.id])
    assert [c.id for c in await hub.chats.list_chats(bob, limit=10, before=None)] == [chat.id]
    assert await hub.chats.list_chats(carol, limit=10, before=None) == []
    with pytest.raises(ChatNotFound):
        await hub.chats.get(carol, chat.id)

    turn = await hub.turns.start(bob, TurnCreate(text='{"raw": "one"}', chat_id="1"))
    assert (await outcome(hub, turn.job_id)).content == "one"
    again = await hub.turns.regenerate(bob, turn.assistant_message_id, Regenerate())
    assert again.user_message_id == turn.user_message_id
    await outcome(hub, again.job_id)
    question, answer = await hub.chats.messages(root, 1)
    assert (question.number, question.author_id, answer.id) == (
        1,
        bob.id,
        again.assistant_message_id,
    )
    assert answer.sibling_ids == [turn.assistant_message_id, again.assistant_message_id]
    assert question.sibling_ids == [question.id]

    await hub.chats.update(root, chat.id, ChatUpdate(current_message_id=turn.user_message_id))
    assert (await hub.chats.messages(bob, chat.id))[-1].id == again.assistant_message_id
    await hub.chats.update(bob, chat.id, ChatUpdate(current_message_id=turn.assistant_message_id))
    with pytest.raises(PermissionDenied):
        await hub.chats.update(bob, chat.id, ChatUpdate(title="mine"))
    assert (await hub.chats.messages(bob, chat.id))[-1].id == turn.assistant_message_id
    with pytest.raises(PermissionDenied):
        await hub.chats.delete(bob, chat.id)
    await hub.chats.delete(root, chat.id)
    assert await hub.chats.list_chats(bob, limit=10, before=None) == []


async def on_a_new_database(
    backend: str, tmp_path: Path, run: Callable[[str], Awaitable[None]]
) -> None:
    """`run` with the URL of a new, empty database of `backend`."""
    if backend == "sqlite":
        await run(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        return
    async with postgres_url() as url:
        await run(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_numbers_existing_rows(tmp_path: Path, backend: str) -> None:
    """A database made by the first release gains numbers, in creation order, and keeps its rows."""
    await on_a_new_database(backend, tmp_path, _migrate_old_database)


async def _migrate_old_database(url: str) -> None:
    db = Database(url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0001"))
            ids = sorted(new_id() for _ in range(2))
            for user_id, name in zip(ids, ("zed", "amy"), strict=True):  # names sort the other way
                await conn.execute(
                    text(
                        "insert into users (id, name, role, profile, instruction_recording,"
                        " created_at, updated_at) values (:id, :name, 'user', '{}', false,"
                        " '2026-01-01', '2026-01-01')"
                    ),
                    {"id": user_id, "name": name},
                )
        await db.migrate()
        async with db.begin() as conn:
            await user_rows.insert_user(conn, name="new", role="user", profile={})
            rows = (await conn.execute(text("select name, number from users order by id"))).all()
        assert [tuple(r) for r in rows] == [("zed", 1), ("amy", 2), ("new", 3)]
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_keeps_the_users_a_helper_is_limited_to_by_id(
    tmp_path: Path, backend: str
) -> None:
    """Names stored before become ids; an id stays; a name of nobody stays, matching nobody."""
    await on_a_new_database(backend, tmp_path, _migrate_helper_limits)


async def _migrate_helper_limits(url: str) -> None:
    db = Database(url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0007"))
            carol = await user_rows.insert_user(conn, name="carol", role="user", profile={})
            dan = await user_rows.insert_user(conn, name="dan", role="user", profile={})
            await conn.execute(
                text(
                    "insert into helpers (name, manifest, enabled, allowed_users, registered_at)"
                    " values ('calc', '{}', true, :users, '2026-01-01')"
                ),
                {"users": json.dumps(["carol", dan.id, "ghost"])},
            )
        await db.migrate()
        async with db.connect() as conn:
            stored = (await conn.execute(text("select allowed_users from helpers"))).scalar_one()
        users = json.loads(stored) if isinstance(stored, str) else stored
        assert users == [carol.id, dan.id, "ghost"]
    finally:
        await db.close()


async def _helpers_at_0008(conn: AsyncConnection, manifests: dict[str, object]) -> None:
    """The schema as of migration 0008, with helpers of these names and manifests."""
    await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0008"))
    for name, manifest in manifests.items():
        await conn.execute(
            text(
                "insert into helpers (name, manifest, enabled, registered_at)"
                " values (:name, :manifest, true, '2026-01-01')"
            ),
            {"name": name, "manifest": json.dumps(manifest)},
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_gives_each_helper_the_host_of_its_url(
    tmp_path: Path, backend: str
) -> None:
    """A helper registered before belongs to its base URL's host, spelled as the core spells a
    registering peer's: it keeps its name and heartbeats on."""
    await on_a_new_database(backend, tmp_path, _migrate_helper_hosts)


async def _migrate_helper_hosts(url: str) -> None:
    urls = {
        "calc": "http://127.0.0.1:8801",
        "ipv6": "http://[0:0::1]:8802/",
        "lan": "http://10.0.0.5:80",
        "named": "http://OCR.internal:80",
        "broken": None,
    }
    db = Database(url)
    try:
        async with db.begin() as conn:
            await _helpers_at_0008(
                conn,
                {
                    name: {} if base_url is None else {"name": name, "base_url": base_url}
                    for name, base_url in urls.items()
                },
            )
        await db.migrate()
        async with db.connect() as conn:
            found = await conn.execute(text("select name, host from helpers"))
            hosts = {str(row.name): str(row.host) for row in found}
        assert hosts == {
            "calc": "localhost",
            "ipv6": "localhost",
            "lan": "10.0.0.5",
            "named": "ocr.internal",
            "broken": "",
        }
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_spells_each_helpers_host_as_the_core_does(
    tmp_path: Path, backend: str
) -> None:
    """The hosts 0009 gave helpers are spelled as host_key spells a registering peer's, so each
    helper heartbeats on from its host, and no other host takes it."""
    await on_a_new_database(backend, tmp_path, _migrate_host_spellings)


async def _migrate_host_spellings(url: str) -> None:
    read = {"name": "read", "description": "Reads."}
    urls = {
        "mapped": "http://[::ffff:10.0.0.5]:80",  # 0009: ::ffff:a00:5
        "debian": "http://127.0.1.1:8801",  # 0009: 127.0.1.1, another machine
        "anywhere": "http://0.0.0.0:8801",
        "dotted": "http://ocr.internal.:80",
        "zoned": "http://[fe80::1%25eth0]:80",
        "lan": "http://10.0.0.6:80",
        "broken": None,
    }
    db = Database(url)
    try:
        async with db.begin() as conn:
            await _helpers_at_0008(
                conn,
                {
                    name: {"name": name, "base_url": base_url, "capabilities": [read]}
                    for name, base_url in urls.items()
                },
            )
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0009"))
            # stored as no core would (its URL is refused now), as it may be from long ago
            unreadable = {"name": "x", "base_url": "http://[calc]:80", "capabilities": [read]}
            await conn.execute(
                text(
                    "insert into helpers (name, manifest, enabled, registered_at, host)"
                    " values ('unreadable', :manifest, true, '2026-01-01', 'calc')"
                ),
                {"manifest": json.dumps(unreadable)},
            )
        await db.migrate()
        async with db.connect() as conn:
            found = await conn.execute(text("select name, host from helpers"))
            hosts = {str(row.name): str(row.host) for row in found}
        assert hosts == {
            "mapped": "10.0.0.5",
            "debian": "localhost",
            "anywhere": "localhost",
            "dotted": "ocr.internal",
            "zoned": "fe80::1%eth0",
            "lan": "10.0.0.6",
            "broken": "",
            "unreadable": "",
        }
        registry = HelperRegistry(db, HelperSettings(), key="k", down_after_s=30)
        try:
            await registry.heartbeat("mapped", peer="::ffff:10.0.0.5")
            await registry.heartbeat("debian", peer="127.0.0.1")
            await registry.leave("zoned", peer="fe80::1%eth0")
            with pytest.raises(Conflict):
                await registry.heartbeat("mapped", peer="10.0.0.6")
        finally:
            await registry.close()
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migration_keeps_waiting_jobs_which_run_as_they_did(
    tmp_path: Path, backend: str
) -> None:
    """A job a core older than 0011 left waiting stays waiting, and is queued as that core's
    successors queued it: with the model's own options, unstreamed."""
    await on_a_new_database(backend, tmp_path, _migrate_waiting_jobs)


async def _migrate_waiting_jobs(url: str) -> None:
    db = Database(url)
    try:
        async with db.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0010"))
            ann = await user_rows.insert_user(conn, name="ann", role="user", profile={})
            await conn.run_sync(_a_waiting_job, ann.id)
        await db.migrate()
        async with db.connect() as conn:
            status = (await conn.execute(text("select status from jobs"))).scalar_one()
            kept = await conn.run_sync(job_rows.kept_options, "job")
        assert (status, kept) == ("waiting", ({}, False))
    finally:
        await db.close()


def _a_waiting_job(conn: Connection, user_id: str) -> None:
    """A question, its empty answer and the answer's job, waiting, as of migration 0010."""
    now = datetime.now(UTC)
    chat = ChatRecord("chat", None, user_id, None, "telegram", "t1", None, "answer", now, now)
    chat_rows.insert_chat(conn, chat)
    question = chat_rows.message_row(
        id="question",
        chat_id="chat",
        parent_id=None,
        role="user",
        content="hi",
        status="complete",
        now=now,
    )
    answer = chat_rows.message_row(
        id="answer",
        chat_id="chat",
        parent_id="question",
        role="assistant",
        content="",
        status="queued",
        now=now,
    )
    chat_rows.insert_messages(conn, [question, answer])
    job = job_rows.job_row(
        id="job",
        chat_id="chat",
        message_id="answer",
        user_id=user_id,
        model="echo",
        queue="rabbitmq",
        now=now,
    )
    job_rows.insert_job(conn, {**job, "status": "waiting"})
