"""Jobs in the database: one per generation, so nothing is left "running" after a crash."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.engine import Connection

from patchbay.schemas.jobs import JobRead
from patchbay.store.prepared import Prepared
from patchbay.store.tables import jobs, messages


def job_row(
    *,
    id: str,
    chat_id: str,
    message_id: str,
    user_id: str,
    model: str,
    queue: str,
    now: datetime,
) -> dict[str, object]:
    return {
        "id": id,
        "chat_id": chat_id,
        "message_id": message_id,
        "user_id": user_id,
        "model": model,
        "status": "queued",
        "queue": queue,
        "error": None,
        "attempts": 0,
        "last_seq": None,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
    }


UNFINISHED = ("waiting", "queued", "running")

# Every turn runs these: see `prepared` (the others go through SQLAlchemy as usual).
_INSERT_JOB = Prepared(jobs.insert())
_UPDATE_JOB = Prepared(update(jobs).where(jobs.c.id == bindparam("b_id")))


def insert_job(conn: Connection, row: dict[str, object]) -> None:
    _INSERT_JOB.run(conn, row)


def update_job(conn: Connection, job_id: str, **values: object) -> None:
    _UPDATE_JOB.run(conn, {"b_id": job_id, **values})


def find_job(conn: Connection, job_id: str) -> tuple[JobRead, str, int | None] | None:
    """The job, its owner's user id and the number of its terminal event (if it ended)."""
    row = (conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    if row is None:
        return None
    read = JobRead(
        id=row.id,
        chat_id=row.chat_id,
        message_id=row.message_id,
        model=row.model,
        status=row.status,
        error=row.error,
    )
    return read, row.user_id, row.last_seq


_CLAIM = Prepared(
    update(jobs)
    # Two plain comparisons, not IN: an IN list is rendered into the SQL again on every run.
    .where(
        jobs.c.id == bindparam("b_id"), or_(jobs.c.status == "queued", jobs.c.status == "running")
    )
    .values(
        status="running",
        attempts=jobs.c.attempts + 1,
        started_at=func.coalesce(
            jobs.c.started_at, bindparam("b_now", type_=jobs.c.started_at.type)
        ),
    )
    .returning(jobs.c.attempts)
)  # built once: building it per job cost more than running it


def claim(conn: Connection, job_id: str, now: datetime) -> int | None:
    """Mark a job running as a worker takes it; returns its attempt (2 and up: a takeover), or
    None when it must not run (cancelled, or ended, before this worker got it)."""
    row = _CLAIM.first(conn, {"b_id": job_id, "b_now": now})
    return None if row is None else int(row[0])


def cancel_unfinished(
    conn: Connection,
    job_id: str,
    *,
    reason: str,
    statuses: tuple[str, ...] = UNFINISHED,
    last_seq: int | None = None,
) -> bool:
    """Mark one job cancelled if its status is one of `statuses`; returns whether it was.
    `last_seq`: the number of the `cancelled` event told for it, if one is."""
    now = datetime.now(UTC)
    unfinished = (jobs.c.id == job_id) & jobs.c.status.in_(statuses)
    message_id = select(jobs.c.message_id).where(unfinished).scalar_subquery()
    conn.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(status="cancelled", error=reason, updated_at=now)
    )
    result = conn.execute(
        update(jobs)
        .where(unfinished)
        .values(status="cancelled", error=reason, finished_at=now, last_seq=last_seq)
    )
    return bool(result.rowcount)


def attempts(conn: Connection, job_id: str) -> int:
    """How many times workers took the job (0: none yet, or no such job)."""
    found = conn.execute(select(jobs.c.attempts).where(jobs.c.id == job_id)).scalar()
    return int(found or 0)


def fail_unfinished(conn: Connection, *, queue: str, reason: str) -> int:
    """Mark jobs that a previous process left waiting, queued or running as failed; returns how
    many."""
    unfinished = (jobs.c.queue == queue) & jobs.c.status.in_(UNFINISHED)
    message_ids = select(jobs.c.message_id).where(unfinished).scalar_subquery()
    now = datetime.now(UTC)
    conn.execute(
        update(messages)
        .where(messages.c.id.in_(message_ids))
        .values(status="failed", error=reason, updated_at=now)
    )
    result = conn.execute(
        update(jobs).where(unfinished).values(status="failed", error=reason, finished_at=now)
    )
    return int(result.rowcount)


def last_unfinished_of(conn: Connection, message_ids: list[str]) -> str | None:
    """The job still filling one of the answers `message_ids` (oldest first), the last one's
    first; None if none is."""
    if not message_ids:
        return None
    rows = conn.execute(
        select(jobs.c.id, jobs.c.message_id).where(
            jobs.c.message_id.in_(message_ids), jobs.c.status.in_(UNFINISHED)
        )
    ).all()
    unfinished = {str(row.message_id): str(row.id) for row in rows}
    return next((unfinished[m] for m in reversed(message_ids) if m in unfinished), None)


def waiting_row(*, options: dict[str, object], stream: bool) -> dict[str, object]:
    """What a job row holds more when it waits (see `job_row`): what it runs with once it is
    queued, perhaps by another core."""
    return {"status": "waiting", "options": options, "stream": stream}


def kept_options(conn: Connection, job_id: str) -> tuple[dict[str, object], bool]:
    """The options and streaming choice a waiting job was stored with; a job stored before they
    were kept runs with the model's own options, unstreamed."""
    row = conn.execute(select(jobs.c.options, jobs.c.stream).where(jobs.c.id == job_id)).first()
    if row is None:
        return {}, False
    return dict(row.options or {}), bool(row.stream)


def release_waiting(conn: Connection, job_id: str) -> bool:
    """Queue a waiting job; False when it is not waiting (cancelled meanwhile, or released by
    another core already)."""
    result = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == "waiting").values(status="queued")
    )
    return bool(result.rowcount)


def put_back_waiting(conn: Connection, job_id: str) -> bool:
    """Make a job released a moment ago waiting again (the queue did not take it); False when it
    is not queued any more (cancelled meanwhile)."""
    result = conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued").values(status="waiting")
    )
    return bool(result.rowcount)


def fail_waiting(
    conn: Connection, job_id: str, *, reason: str, last_seq: int
) -> tuple[str, str] | None:
    """Mark a waiting job failed: the answer it was to fill (the caller marks it) and its model;
    None when it is not waiting (cancelled meanwhile, or gone with its chat)."""
    row = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "waiting")
        .values(status="failed", error=reason, finished_at=datetime.now(UTC), last_seq=last_seq)
        .returning(jobs.c.message_id, jobs.c.model)
    ).first()
    return None if row is None else (str(row.message_id), str(row.model))


def waiting_jobs(conn: Connection) -> list[str]:
    """Every waiting job (the one each waits behind is found when it is to be released)."""
    return [
        str(row.id) for row in conn.execute(select(jobs.c.id).where(jobs.c.status == "waiting"))
    ]
