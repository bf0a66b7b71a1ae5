"""Jobs on RabbitMQ with real processes: a core, two workers, one killed mid-job; resume; cancel;
a picture carried to a worker for a model that reads it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, free_port
from tests.support.rabbitmq import RABBITMQ_URL, amqp_channel, require_rabbitmq
from tests.support.up import PATCHBAY, up_env
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Cluster:
    env: dict[str, str]
    core_url: str
    logs: Path
    workers: dict[str, subprocess.Popen[bytes]]
    core: subprocess.Popen[bytes]

    def start_core(self, name: str) -> tuple[subprocess.Popen[bytes], str]:
        """Another core on the same queue and database, and its URL."""
        port = free_port()
        with (self.logs / f"{name}.log").open("wb") as log:
            core = subprocess.Popen(
                [PATCHBAY, "core"],
                env={**self.env, "PATCHBAY_CORE__PORT": str(port)},
                stderr=log,
                stdout=log,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        return core, url

    def start_worker(self, name: str, **env: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            self.workers[name] = subprocess.Popen(
                [PATCHBAY, "worker", "--name", name],
                env={**self.env, "PATCHBAY_LOG__LEVEL": "INFO", **env},
                stderr=log,
                stdout=log,
                start_new_session=True,
            )

    def listen(
        self, job_id: str, timeout_s: float
    ) -> tuple[threading.Thread, list[dict[str, Any]]]:
        """A listener of the job's events, in a thread of its own: the thread and what it hears."""
        heard: list[dict[str, Any]] = []

        def listen() -> None:
            url = f"{self.core_url}/v1/jobs/{job_id}/events"
            with httpx.stream("GET", url, headers=AUTH, timeout=timeout_s) as got:
                heard.extend(events(got))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        return listener, heard

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_workers(self) -> None:
        for process in self.workers.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)

    def wait_started(self, worker: str, job_id: str) -> None:
        deadline = time.monotonic() + 30
        while f"job {job_id} started" not in self.log(worker):
            assert time.monotonic() < deadline, f"{worker} did not take the job"
            time.sleep(0.05)

    def wait_ended(self, job_id: str) -> dict[str, Any]:
        """The job, once it is neither waiting, queued nor running."""
        deadline = time.monotonic() + 60
        while (job := httpx.get(f"{self.core_url}/v1/jobs/{job_id}", headers=AUTH).json())[
            "status"
        ] in {"waiting", "queued", "running"}:
            assert time.monotonic() < deadline, "the job never ended"
            time.sleep(0.1)
        ended: dict[str, Any] = job
        return ended


def wait_healthy(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def wait_workers(core_url: str, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        modules = httpx.get(core_url + "/v1/status", headers=AUTH).json()["modules"]
        if sum(m["kind"] == "worker" and m["state"] == "up" for m in modules) >= count:
            return
        time.sleep(0.2)
    raise AssertionError("the workers did not report in")


@pytest.fixture
def cluster(tmp_path: Path, upstream: MockUpstream) -> Iterator[Cluster]:
    require_rabbitmq()
    suffix = secrets.token_hex(4)
    env = up_env(
        tmp_path,
        PATCHBAY_LOCAL_MODEL__ENABLED="false",
        PATCHBAY_ADMIN_KEY=ADMIN_KEY,
        PATCHBAY_QUEUE="rabbitmq",
        PATCHBAY_RABBITMQ_URL=RABBITMQ_URL,
        PATCHBAY_JOBS__QUEUE_NAME=f"patchbay.jobs.test-{suffix}",
        PATCHBAY_JOBS__EXCHANGE_PREFIX=f"patchbay-test-{suffix}",
        PATCHBAY_JOBS__CONCURRENCY="4",
        PATCHBAY_JOBS__MAX_DEPTH="3",
        PATCHBAY_JOBS__CHECKPOINT_INTERVAL_S="0.2",
        PATCHBAY_STATUS__HEARTBEAT_INTERVAL_S="0.5",
    )
    core = subprocess.Popen([PATCHBAY, "core"], env=env, start_new_session=True)
    running = Cluster(env, f"http://127.0.0.1:{env['PATCHBAY_CORE__PORT']}", tmp_path, {}, core)
    try:
        wait_healthy(running.core_url)
        with httpx.Client(base_url=running.core_url, headers=AUTH) as admin:
            admin.post(
                "/v1/providers",
                json={"name": "mock", "kind": "openai", "api_base": upstream.base_url},
            ).raise_for_status()
            admin.post(
                "/v1/models", json={"name": "mock-gpt", "provider": "mock", "is_default": True}
            ).raise_for_status()
        for name in ("w1", "w2"):
            running.start_worker(name)
        wait_workers(running.core_url, 2)
        yield running
    finally:
        for process in [core, *running.workers.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in [core, *running.workers.values()]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        asyncio.run(_delete(env))


async def _delete(env: dict[str, str]) -> None:
    async with amqp_channel() as channel:
        await channel.queue_delete(env["PATCHBAY_JOBS__QUEUE_NAME"])
        for kind in ("events", "control"):
            await channel.exchange_delete(f"{env['PATCHBAY_JOBS__EXCHANGE_PREFIX']}.{kind}")


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The SSE events of a streaming response, as they come."""
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if current:
                yield current
            current = {}
            continue
        field, _, value = line.partition(": ")
        current[field] = json.loads(value) if field == "data" else value


def test_a_turn_runs_on_a_worker(cluster: Cluster, upstream: MockUpstream) -> None:
    result = httpx.post(
        cluster.core_url + "/v1/turns?wait=true", json={"text": "hi"}, headers=AUTH, timeout=30
    ).json()
    assert result["outcome"]["type"] == "done"
    assert result["outcome"]["content"] == upstream.reply


@pytest.mark.timeout(120)
def test_a_worker_killed_mid_job_loses_nothing(cluster: Cluster, upstream: MockUpstream) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.4
    upstream.reply = "one two three four five six seven eight"
    headers = {**AUTH, "Accept": "text/event-stream"}
    seen: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", cluster.core_url + "/v1/turns", json={"text": "count"}, headers=headers, timeout=60
    ) as response:
        job_id = response.headers["x-patchbay-job-id"]
        stream = events(response)
        for event in stream:
            seen.append(event)
            if event["event"] == "running" and len(seen) >= 3:
                break
        victim = busy_worker(cluster, job_id)
        os.killpg(cluster.workers[victim].pid, signal.SIGKILL)
        cluster.workers[victim].wait(timeout=10)
        for event in stream:
            seen.append(event)
    kinds = [e["event"] for e in seen]
    assert kinds.count("restarted") == 1 and kinds[-1] == "done"
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    after = kinds.index("restarted")
    restarted_text = "".join(e["data"].get("delta", "") for e in seen[after:])
    assert restarted_text == upstream.reply
    assert seen[-1]["data"]["content"] == upstream.reply
    job = httpx.get(f"{cluster.core_url}/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["status"] == "done"
    chat = httpx.get(cluster.core_url + "/v1/chats", headers=AUTH).json()[0]
    messages = httpx.get(f"{cluster.core_url}/v1/chats/{chat['id']}/messages", headers=AUTH)
    assert [m["content"] for m in messages.json()] == ["count", upstream.reply]
    # a listener that saw up to any point resumes with every later event exactly once
    for last in (ids[1], ids[after - 1], ids[after], ids[-2]):
        with httpx.stream(
            "GET",
            f"{cluster.core_url}/v1/jobs/{job_id}/events",
            headers={**AUTH, "Last-Event-ID": str(last)},
        ) as again:
            assert [int(e["id"]) for e in events(again)] == [i for i in ids if i > last]


@pytest.mark.timeout(120)
def test_a_core_started_mid_job_gives_its_listeners_the_whole_answer(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.2
    upstream.reply = " ".join(f"word{i}" for i in range(50))  # ten seconds of tokens
    job_id = httpx.post(cluster.core_url + "/v1/turns", json={"text": "go"}, headers=AUTH).json()[
        "job_id"
    ]
    late, late_url = cluster.start_core("core2")
    try:
        job = httpx.get(f"{late_url}/v1/jobs/{job_id}", headers=AUTH).json()
        assert job["status"] == "running"  # it started before this core did
        for last in (None, "3"):  # a new listener, and one that had some of the answer
            headers = {**AUTH, "Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = last
            with httpx.stream(
                "GET", f"{late_url}/v1/jobs/{job_id}/events", headers=headers, timeout=60
            ) as response:
                seen = list(events(response))
            kinds = [e["event"] for e in seen]
            start = kinds.index("restarted") + 1 if "restarted" in kinds else 0
            assert "".join(e["data"].get("delta", "") for e in seen[start:]) == upstream.reply
            assert kinds[-1] == "done" and ("restarted" in kinds) == (last is not None)
            ids = [int(e["id"]) for e in seen]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
    finally:
        os.killpg(late.pid, signal.SIGTERM)
        late.wait(timeout=20)


def test_a_picture_crosses_rabbitmq_to_a_model_that_reads_it(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    picture = {"media_type": "image/png", "data": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()}
    with httpx.Client(base_url=cluster.core_url, headers=AUTH, timeout=30) as admin:
        vision = {
            "name": "vision",
            "provider": "mock",
            "options": {"attachment_types": ["image/png"]},
        }
        admin.post("/v1/models", json=vision).raise_for_status()
        body = {"text": "What is it?", "model": "vision", "attachments": [picture]}
        result = admin.post("/v1/turns?wait=true", json=body).json()
    assert result["outcome"]["type"] == "done"
    _text, image = upstream.requests[-1]["messages"][-1]["content"]
    assert image["image_url"]["url"] == f"data:image/png;base64,{picture['data']}"


def busy_worker(cluster: Cluster, job_id: str) -> str:
    """The worker whose log says it started the job."""
    for name in cluster.workers:
        if f"job {job_id} started" in cluster.log(name):
            return name
    raise AssertionError("no worker has started the job")


def test_cancel_reaches_the_worker(cluster: Cluster, upstream: MockUpstream) -> None:
    upstream.mode, upstream.delay_s = "drip", 1.0  # five words: five seconds
    created = httpx.post(cluster.core_url + "/v1/turns", json={"text": "hi"}, headers=AUTH)
    job_id = created.json()["job_id"]
    deadline = time.monotonic() + 10
    while (
        httpx.get(f"{cluster.core_url}/v1/jobs/{job_id}", headers=AUTH).json()["status"]
        != "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.2)
    started = time.monotonic()
    cancelled = httpx.delete(f"{cluster.core_url}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert cancelled.json()["status"] == "cancelled"
    assert time.monotonic() - started < 2 * upstream.delay_s  # not when the model ends


def test_a_full_queue_refuses_turns_and_loses_none(cluster: Cluster) -> None:
    cluster.stop_workers()
    accepted = []
    for number in range(3):
        created = httpx.post(
            cluster.core_url + "/v1/turns", json={"text": f"{number}"}, headers=AUTH
        )
        assert created.status_code == 202, created.text
        accepted.append(created.json()["job_id"])
    refused = httpx.post(
        cluster.core_url + "/v1/turns", json={"text": "one too many"}, headers=AUTH
    )
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert refused.json()["error"] == {
        "code": "queue_full",
        "message": refused.json()["error"]["message"],
        "retryable": True,
    }
    cluster.start_worker("w3")
    deadline = time.monotonic() + 30
    for job_id in accepted:
        while (
            httpx.get(f"{cluster.core_url}/v1/jobs/{job_id}", headers=AUTH).json()["status"]
            != "done"
        ):
            assert time.monotonic() < deadline, "an accepted job was lost"
            time.sleep(0.1)


@pytest.mark.timeout(120)
def test_a_job_outliving_a_stopping_workers_grace_goes_to_another(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    cluster.stop_workers()
    cluster.start_worker("brief", PATCHBAY_JOBS__STOP_GRACE_S="0.2")
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = "one two three four five six seven eight"
    job_id = httpx.post(
        cluster.core_url + "/v1/turns", json={"text": "count"}, headers=AUTH
    ).json()["job_id"]
    cluster.wait_started("brief", job_id)
    time.sleep(0.5)  # some of the answer is out
    os.killpg(cluster.workers["brief"].pid, signal.SIGTERM)  # a stop, not a crash
    cluster.workers["brief"].wait(timeout=20)
    cluster.start_worker("next")
    job = cluster.wait_ended(job_id)
    assert job["status"] == "done", job  # started again by the next worker, as a crash would be
    with httpx.stream("GET", f"{cluster.core_url}/v1/jobs/{job_id}/events", headers=AUTH) as got:
        seen = list(events(got))
    assert seen[-1]["data"]["content"] == upstream.reply


@pytest.mark.timeout(180)
def test_a_job_that_kills_its_workers_is_not_started_for_ever(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    cluster.stop_workers()
    upstream.mode, upstream.delay_s = "drip", 1.0
    job_id = httpx.post(cluster.core_url + "/v1/turns", json={"text": "x"}, headers=AUTH).json()[
        "job_id"
    ]
    for attempt in range(3):  # as a job whose input crashes the worker (OOM, a native crash)
        name = f"victim{attempt}"
        cluster.start_worker(name)
        cluster.wait_started(name, job_id)
        os.killpg(cluster.workers[name].pid, signal.SIGKILL)
        cluster.workers[name].wait(timeout=10)
    cluster.start_worker("last")
    job = cluster.wait_ended(job_id)
    assert job["status"] == "failed", job
    assert "stopped before its end (3)" in job["error"]
    assert f"job {job_id} started" not in cluster.log("last")  # failed, not run a fourth time


@pytest.mark.timeout(120)
def test_a_job_cancelled_while_no_worker_is_up_stays_cancelled(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.5
    job_id = httpx.post(cluster.core_url + "/v1/turns", json={"text": "x"}, headers=AUTH).json()[
        "job_id"
    ]
    deadline = time.monotonic() + 30
    while not any(f"job {job_id} started" in cluster.log(name) for name in cluster.workers):
        assert time.monotonic() < deadline, "no worker took the job"
        time.sleep(0.05)
    listener, heard = cluster.listen(job_id, timeout_s=60)  # there all along
    for process in cluster.workers.values():  # the one running it dies, the other stops
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    cancelled = httpx.delete(f"{cluster.core_url}/v1/jobs/{job_id}", headers=AUTH, timeout=30)
    assert cancelled.json()["status"] == "cancelled", cancelled.json()
    listener.join(timeout=20)  # told the job ended: it waited for ever before
    assert not listener.is_alive() and heard[-1]["event"] == "cancelled", heard[-3:]
    assert [int(e["id"]) for e in heard] == sorted({int(e["id"]) for e in heard})
    cluster.start_worker("later")
    wait_workers(cluster.core_url, 1)
    time.sleep(2)  # were the job handed to it, it would be running now
    job = httpx.get(f"{cluster.core_url}/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["status"] == "cancelled", job
    assert f"job {job_id} started" not in cluster.log("later")


def _lose_the_cores_events(env: dict[str, str]) -> None:
    """Events stop reaching the core, as when RabbitMQ dropped its queue while it was away
    (here: its queue is unbound from the events, so the core notices nothing)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=True
    )
    exchange = f"{env['PATCHBAY_JOBS__EXCHANGE_PREFIX']}.events"
    (queue,) = [name for name in listed.stdout.split() if name.startswith(f"{exchange}.")]

    async def unbind() -> None:
        async with amqp_channel() as channel:
            await (await channel.get_queue(queue)).unbind(exchange, routing_key="#")

    asyncio.run(unbind())


@pytest.mark.timeout(120)
def test_a_listener_whose_events_were_lost_on_the_way_still_hears_the_end(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 1.0  # a word a second
    job_id = httpx.post(cluster.core_url + "/v1/turns", json={"text": "x"}, headers=AUTH).json()[
        "job_id"
    ]
    listener, heard = cluster.listen(job_id, timeout_s=90)
    deadline = time.monotonic() + 30
    while not any(event["event"] == "running" for event in heard):
        assert time.monotonic() < deadline, "no token came"
        time.sleep(0.05)
    _lose_the_cores_events(cluster.env)
    listener.join(timeout=60)  # the job ends in the store; no event of it reaches the core
    assert not listener.is_alive(), heard[-3:]
    assert heard[-1]["event"] == "done" and heard[-1]["data"]["content"] == upstream.reply


def test_a_turn_waiting_behind_another_is_answered_when_its_core_is_gone(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "slow", 2.0
    turn = {"channel": "test", "thread": "t1", "stream": False}
    first = httpx.post(cluster.core_url + "/v1/turns", json={**turn, "text": "one"}, headers=AUTH)
    options = {"temperature": 0.3, "max_tokens": 7}
    second = httpx.post(
        cluster.core_url + "/v1/turns",
        json={**turn, "text": "two", "queue_behind": True, "options": options},
        headers=AUTH,
    )
    assert second.json()["chat_id"] == first.json()["chat_id"]
    os.killpg(cluster.core.pid, signal.SIGKILL)  # it was to queue the second once the first ended
    cluster.core.wait(timeout=20)
    other, other_url = cluster.start_core("core2")
    try:
        cluster.core_url = other_url
        assert cluster.wait_ended(first.json()["job_id"])["status"] == "done"
        assert cluster.wait_ended(second.json()["job_id"])["status"] == "done"
    finally:
        os.killpg(other.pid, signal.SIGTERM)
        other.wait(timeout=20)
    asked = [(m["role"], m["content"]) for m in upstream.requests[-1]["messages"]]
    assert asked[-3:] == [("user", "one"), ("assistant", upstream.reply), ("user", "two")]
    # with its turn's options, where the other core knew none
    assert upstream.requests[-1]["temperature"] == 0.3
    assert upstream.requests[-1]["max_tokens"] == 7
    assert not upstream.requests[-1].get("stream")


def test_a_turn_waiting_behind_another_waits_for_room_in_a_full_queue(
    cluster: Cluster, upstream: MockUpstream
) -> None:
    cluster.stop_workers()
    turn = {"channel": "test", "thread": "t1", "stream": False}

    def send(text: str, **extra: object) -> str:
        created = httpx.post(
            cluster.core_url + "/v1/turns", json={**turn, "text": text, **extra}, headers=AUTH
        )
        assert created.status_code == 202, created.text
        return str(created.json()["job_id"])

    first = send("one")
    second = send("two", queue_behind=True)
    others = [send(f"other {n}", thread=f"t{n}") for n in (2, 3)]  # the queue is full (3)
    cancelled = httpx.delete(f"{cluster.core_url}/v1/jobs/{first}", headers=AUTH)
    assert cancelled.json()["status"] == "cancelled"  # still in the queue, its place taken
    time.sleep(3)  # the second is released, refused by the full queue, and tried again
    job = httpx.get(f"{cluster.core_url}/v1/jobs/{second}", headers=AUTH).json()
    assert job["status"] in ("waiting", "queued"), job  # failed, though it had been accepted
    cluster.start_worker("w3")
    for job_id in [*others, second]:
        assert cluster.wait_ended(job_id)["status"] == "done"
    asked = [(m["role"], m["content"]) for m in upstream.requests[-1]["messages"]]
    assert asked[-2:] == [("user", "one"), ("user", "two")]
