"""The web chat channel in a real headless Chromium: what a person sees and can do on the page."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, expect
from playwright.sync_api import Route as PageRoute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay.channels.web.app import create_app as create_web
from patchbay.schemas.helpers import HELPER_KEY_HEADER
from patchbay.tokens import helper_key
from tests.conftest import ADMIN_KEY, free_port, make_settings
from tests.support.browser import PHONE, Tab, chromium, open_tab, sign_in
from tests.support.hand_helper import HandHelper, running_helper
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.up import PATCHBAY, up_env
from tests.support.upstream import MockUpstream

pytestmark = pytest.mark.integration

REPLY = "Hello from the mock upstream."
PAGE = {"X-Patchbay-Web": "1"}  # what the page's scripts send with every call


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def web(stack: Stack) -> Iterator[str]:
    with serve_in_thread(create_web(stack.settings), stack.settings.web.port) as url:
        yield url


@pytest.fixture
def key(stack: Stack) -> str:
    return stack.new_user("alice")


@pytest.fixture
def tab(browser: Browser, tmp_path: Path) -> Iterator[Tab]:
    with open_tab(browser, tmp_path) as opened:
        yield opened


def send(tab: Tab, text: str) -> None:
    prompt = tab.page.get_by_label("Message")
    prompt.fill(text)
    prompt.press("Enter")


def answer(tab: Tab) -> Locator:  # the last answer on the page
    return tab.page.locator("article.msg.assistant .bubble").last


def test_sign_in_send_and_see_the_answer_stream_in_as_markdown(
    tab: Tab, web: str, key: str, upstream: MockUpstream
) -> None:
    upstream.reply = "Here is **bold** text and code:\n\n```python\nprint('hi')\n```"
    sign_in(tab, web, key)
    page = tab.page
    expect(page.get_by_text("What can I help with?")).to_be_visible()
    send(tab, "Show me <b>markup</b>")
    expect(page.locator("article.msg.user .bubble")).to_have_text("Show me <b>markup</b>")
    expect(answer(tab).locator("strong")).to_have_text("bold")
    expect(answer(tab).locator("pre code")).to_have_text("print('hi')")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator("#chat-list").get_by_text("Show me <b>markup</b>")).to_be_visible()
    expect(page.locator("#chat-title")).to_have_text("Show me <b>markup</b>")
    tab.shot("answer")
    tab.assert_no_errors()


def test_answers_are_sanitized_before_they_reach_the_page(
    tab: Tab, web: str, key: str, upstream: MockUpstream
) -> None:
    upstream.reply = (
        'Look: <img src="x" onerror="window.pwned=1"> <script>window.pwned=2</script> **safe**'
    )
    sign_in(tab, web, key)
    send(tab, "Anything")
    expect(answer(tab).locator("strong")).to_have_text("safe")
    expect(answer(tab)).to_contain_text('<img src="x" onerror="window.pwned=1">')  # shown as text
    assert tab.page.evaluate("window.pwned") is None
    assert answer(tab).locator("script, [onerror]").count() == 0
    tab.assert_no_errors()


# A browser busy elsewhere may paint late: a streamed update still waiting for its frame when the
# stored answer is drawn must not put the answer's last streamed state back over it.
LATE_FRAMES = """
window.requestAnimationFrame = (paint) => setTimeout(() => paint(performance.now()), 400);
window.cancelAnimationFrame = (frame) => clearTimeout(frame);
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("frames", ["prompt", "late"])
def test_stop_a_generation(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream, frames: str
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = " ".join(f"word{n}" for n in range(1, 61))
    if frames == "late":
        tab.page.add_init_script(LATE_FRAMES)
    sign_in(tab, web, key)
    page = tab.page
    send(tab, "Count slowly")
    expect(answer(tab)).to_contain_text("word3")
    tab.shot("streaming")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped")).to_be_visible()
    upstream.mode = "ok"  # the rest of the upstream's answer, which nobody reads now, goes quickly
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    kept = answer(tab).inner_text()
    assert "word3" in kept and "word60" not in kept
    with httpx.Client(base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}) as core:
        (chat,) = core.get("/v1/chats").json()
        last = core.get(f"/v1/chats/{chat['id']}/messages").json()[-1]
    assert last["status"] == "cancelled" and "word60" not in last["content"]
    tab.page.evaluate("() => new Promise((painted) => requestAnimationFrame(painted))")
    expect(page.get_by_text("Stopped")).to_be_visible()  # still, after any frame left pending
    tab.assert_no_errors()


@pytest.mark.timeout(90)
def test_regenerate_and_switch_between_branches(
    tab: Tab, web: str, key: str, upstream: MockUpstream
) -> None:
    page = answered_hello(tab, web, key)
    upstream.reply = "A second, better answer."
    page.get_by_role("button", name="Regenerate").click()
    expect(answer(tab)).to_have_text("A second, better answer.")
    expect(page.locator(".branch-count")).to_have_text("2 / 2")
    tab.shot("branches")
    page.get_by_role("button", name="Previous answer").click()
    expect(page.locator(".branch-count")).to_have_text("1 / 2")
    expect(answer(tab)).to_have_text(REPLY)
    expect(page.get_by_role("button", name="Previous answer")).to_be_disabled()
    page.get_by_role("button", name="Next answer").click()
    expect(page.locator(".branch-count")).to_have_text("2 / 2")
    expect(answer(tab)).to_have_text("A second, better answer.")
    page.reload()  # the branch shown is the chat's, kept by the core
    expect(answer(tab)).to_have_text("A second, better answer.")
    tab.assert_no_errors()


def test_pick_a_model_or_an_assistant(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream
) -> None:
    polite = {
        "messages": [
            {"role": "system", "content": "Be polite."},
            {"role": "user", "content": "{query}"},
        ]
    }
    with stack.admin() as admin:
        admin.post(
            "/v1/assistants", json={"name": "polite", "template": {"streams": [polite]}}
        ).raise_for_status()
    sign_in(tab, web, key)
    page, picker = tab.page, tab.page.get_by_label("Model or assistant")
    expect(picker).to_have_value("")  # the default model, named in the option
    expect(picker.locator("option:checked")).to_have_text("Default (mock-gpt)")
    picker.select_option("echo")
    send(tab, "ping")
    expect(page.locator("article.msg.assistant .meta")).to_contain_text("echo")
    expect(answer(tab)).to_contain_text("ping")
    assert upstream.requests == []  # the echo model answered, not the upstream

    page.get_by_role("button", name="New chat").click()
    picker.select_option(label="polite")
    send(tab, "Hello, assistant")
    expect(answer(tab)).to_have_text(REPLY)
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Be polite."}
    page.reload()
    expect(picker).to_have_value("assistant:polite")  # the choice is remembered
    tab.assert_no_errors()


def test_rename_search_and_delete_chats(tab: Tab, web: str, key: str, stack: Stack) -> None:
    with httpx.Client(
        base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as core:
        for text in ("Plan a trip to Lisbon", "A recipe for soup"):
            core.post("/v1/turns?wait=true", json={"text": text}).raise_for_status()
        sign_in(tab, web, key)
        page, chats = tab.page, tab.page.locator("#chat-list")
        expect(
            chats.get_by_role("button", name="Plan a trip to Lisbon", exact=True)
        ).to_be_visible()
        expect(chats.get_by_role("button", name="A recipe for soup", exact=True)).to_be_visible()

        page.get_by_label("Search chats").fill("lisbon")
        expect(chats.get_by_role("button", name="A recipe for soup", exact=True)).to_be_hidden()
        page.get_by_role("button", name="Rename Plan a trip to Lisbon").click()
        page.get_by_label("Chat title").fill("Lisbon in spring")
        page.get_by_role("button", name="Save").click()
        expect(chats.get_by_role("button", name="Lisbon in spring", exact=True)).to_be_visible()
        page.get_by_label("Search chats").fill("")
        expect(chats.locator("li")).to_have_count(2)

        chats.get_by_role("button", name="A recipe for soup", exact=True).click()
        expect(page.locator("#chat-title")).to_have_text("A recipe for soup")
        page.get_by_role("button", name="Delete A recipe for soup").click()
        expect(page.get_by_text("and all its messages will be gone")).to_be_visible()
        tab.shot("delete-dialog")
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(chats.locator("li")).to_have_count(1)
        expect(page.locator("#chat-title")).to_have_text("New chat")
        titles = [chat["title"] for chat in core.get("/v1/chats").json()]
    assert titles == ["Lisbon in spring"]
    tab.assert_no_errors()


@pytest.mark.timeout(90)
def test_every_chat_can_be_found_however_many_there_are(
    tab: Tab, web: str, key: str, stack: Stack
) -> None:
    with httpx.Client(
        base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as core:
        first = core.post("/v1/chats", json={"title": "The very first chat"}).json()
        for n in range(230):  # an API user's scripts make a chat per conversation
            core.post("/v1/chats", json={"title": f"Script run {n}"}).raise_for_status()
    sign_in(tab, web, key)
    page, chats = tab.page, tab.page.locator("#chat-list")
    expect(chats.locator("li")).to_have_count(231)
    page.get_by_label("Search chats").fill("very first")
    chats.get_by_role("button", name="The very first chat", exact=True).click()
    expect(page.locator("#chat-title")).to_have_text("The very first chat")
    page.goto(f"{web}/#chat={first['id']}")  # opened from a link, it is named too
    expect(page.locator("#chat-title")).to_have_text("The very first chat")
    tab.assert_no_errors()


def test_attach_a_file(tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream) -> None:
    with running_helper() as hand:
        secret = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=hand.manifest(), headers=secret)
        sign_in(tab, web, key)
        page = tab.page
        note = b"The secret word is pineapple."
        page.locator("#file-input").set_input_files(
            files=[FilePayload(name="notes.txt", mimeType="text/plain", buffer=note)]
        )
        expect(page.locator("#attachments").get_by_text("notes.txt")).to_be_visible()
        send(tab, "What is the secret word?")
        expect(answer(tab)).to_have_text(REPLY)
        expect(page.locator("article.msg.user .files")).to_contain_text("notes.txt")
        expect(page.locator("#attachments li")).to_have_count(0)
        tab.shot("attachment")
    assert "pineapple" in str(upstream.requests[-1]["messages"][-1]["content"])
    tab.assert_no_errors()


@contextmanager
def slow_reader(delay_s: float) -> Iterator[HandHelper]:
    """A to-text helper that takes `delay_s` to read a file (as speech-to-text of a long note)."""

    async def text(request: Request) -> Response:
        await asyncio.sleep(delay_s)
        return JSONResponse({"text": (await request.body()).decode(), "format": "plain"})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[Route("/capabilities/text", text, methods=["POST"]), Route("/health", health)]
    )
    reader = HandHelper()
    with serve_in_thread(app, free_port()) as url:
        reader.url = url
        yield reader


@pytest.mark.timeout(90)
def test_stop_while_the_files_are_still_being_read(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = " ".join(f"word{n}" for n in range(1, 41))
    with slow_reader(3.0) as reader:
        secret = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=reader.manifest(), headers=secret)
        sign_in(tab, web, key)
        page = tab.page
        page.locator("#file-input").set_input_files(
            files=[FilePayload(name="note.txt", mimeType="text/plain", buffer=b"A long note.")]
        )
        send(tab, "Summarize my note")
        page.get_by_role("button", name="Stop").click()  # while the note is still being read
        expect(page.get_by_text("Stopped")).to_be_visible(timeout=20_000)
        expect(page.get_by_role("button", name="Send")).to_be_visible()
    with httpx.Client(base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}) as core:
        (chat,) = core.get("/v1/chats").json()
        last = core.get(f"/v1/chats/{chat['id']}/messages").json()[-1]
    assert last["status"] == "cancelled" and "word40" not in last["content"]
    tab.assert_no_errors()


@pytest.mark.timeout(90)
def test_what_is_typed_while_a_message_is_sent_stays_in_the_box(
    tab: Tab, web: str, key: str, stack: Stack
) -> None:
    with slow_reader(2.0) as reader:
        secret = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=reader.manifest(), headers=secret)
        sign_in(tab, web, key)
        page, files = tab.page, tab.page.locator("#file-input")
        files.set_input_files(
            files=[FilePayload(name="note.txt", mimeType="text/plain", buffer=b"A")]
        )
        send(tab, "Summarize my note")
        page.get_by_label("Message").fill("And one more thing")  # while the note is read
        files.set_input_files(
            files=[FilePayload(name="later.txt", mimeType="text/plain", buffer=b"B")]
        )
        expect(page.locator("article.msg.user.pending")).to_be_visible()  # still being sent
        expect(answer(tab)).to_have_text(REPLY)
        expect(page.locator("article.msg.user .files")).to_have_text(re.compile("note.txt"))
    expect(page.get_by_label("Message")).to_have_value("And one more thing")
    expect(page.locator("#attachments li")).to_have_count(1)
    expect(page.locator("#attachments li")).to_contain_text("later.txt")
    tab.assert_no_errors()


def test_record_audio_in_the_browser(tab: Tab, web: str, key: str) -> None:
    sign_in(tab, web, key)
    page = tab.page
    page.get_by_role("button", name="Record audio").click()
    expect(page.get_by_role("button", name="Stop recording")).to_be_visible()
    page.wait_for_timeout(1200)
    page.get_by_role("button", name="Stop recording").click()
    chip = page.locator("#attachments li")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("recording-")
    expect(chip).to_have_attribute("title", "audio/webm")
    tab.assert_no_errors()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("events", ["steady", "burst"])
def test_refreshing_mid_answer_resumes_the_stream(
    tab: Tab, web: str, key: str, upstream: MockUpstream, events: str
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = " ".join(f"part{n}" for n in range(1, 31)) + "."
    sign_in(tab, web, key)
    page = tab.page

    def slow_chat(route: PageRoute) -> None:
        time.sleep(1.6)  # the answer's first events wait in its stream, then come all at once
        route.continue_()

    if events == "burst":
        page.route("**/api/chats/*/messages", slow_chat, times=1)
    resumed = resumed_from(page)
    send(tab, "Take your time")
    expect(answer(tab)).to_contain_text("part4")
    page.reload()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert resumed and int(resumed[0]) > 3  # it asked only for what it had not seen
    page.reload()  # and the stored answer is the same, whole
    expect(answer(tab)).to_have_text(upstream.reply)
    tab.assert_no_errors()


@pytest.mark.timeout(90)
def test_a_message_sent_while_the_page_still_loads_is_followed_once(
    tab: Tab, web: str, key: str, upstream: MockUpstream
) -> None:
    """The box is there as soon as the person is signed in, before the chat list has loaded: a
    message sent meanwhile is the page's to follow, not an answer left from before a reload."""
    upstream.mode, upstream.delay_s = "drip", 0.2
    upstream.reply = " ".join(f"part{n}" for n in range(1, 21)) + "."
    page = tab.page
    held: list[PageRoute] = []

    def hold(route: PageRoute) -> None:
        held.append(route)  # answered below

    page.route(lambda url: "/api/chats?" in url, hold, times=1)  # the list, as the page signs in
    resumed = resumed_from(page)
    sign_in(tab, web, key)
    send(tab, "Take your time")
    expect(answer(tab)).to_contain_text("part2")
    assert len(held) == 1
    held[0].continue_()  # the list comes, and signing in goes on
    expect(page.locator("#chat-list").get_by_text("Take your time")).to_be_visible()
    expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert resumed == []  # followed on its own stream, once, never from its start again
    tab.assert_no_errors()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("load", ["fails", "hangs"])
def test_an_answer_is_followed_when_its_chat_does_not_load_at_first(
    tab: Tab, web: str, key: str, upstream: MockUpstream, load: str
) -> None:
    """The channel restarts, or is slow, just as the page loads the chat it sent a message to."""
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = " ".join(f"part{n}" for n in range(1, 21)) + "."
    sign_in(tab, web, key)
    page = tab.page

    def never_answered(_route: PageRoute) -> None:
        pass  # the page is reloaded first

    not_loaded = (
        (lambda route: route.abort("connectionreset")) if load == "fails" else never_answered
    )
    page.route("**/api/chats/*/messages", not_loaded, times=1)
    with page.expect_response("**/api/turns"):
        send(tab, "Take your time")
    if load == "fails":
        expect(answer(tab)).to_contain_text("part3")  # streamed where the page put it
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        expect(page.locator("#notice")).to_be_hidden()
    page.reload()  # picks the answer up, as any reload mid-answer
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator("article.msg.user")).to_have_count(1)
    expect(page.locator("#notice")).to_be_hidden()
    tab.assert_no_errors("net::ERR_CONNECTION_RESET")


@pytest.mark.timeout(90)
def test_an_answer_written_in_another_tab_is_seen_to_its_end(
    browser: Browser, tmp_path: Path, web: str, key: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.2
    upstream.reply = " ".join(f"part{n}" for n in range(1, 21)) + "."
    with open_tab(browser, tmp_path) as writer:
        sign_in(writer, web, key)
        send(writer, "Take your time")
        expect(answer(writer)).to_contain_text("part3")
        other = writer.page.context.new_page()  # a second tab of the same browser, signed in
        other.goto(writer.page.url)
        expect(other.locator("article.msg.assistant .bubble").last).to_contain_text("part")
        expect(other.locator("article.msg.assistant .bubble").last).to_have_text(
            upstream.reply, timeout=20_000
        )
        expect(other.get_by_role("button", name="Regenerate")).to_be_visible()
        expect(answer(writer)).to_have_text(upstream.reply)
        writer.assert_no_errors()


class Cable:
    """A TCP link from the web channel to the core that a test cuts and mends: the core as the
    channel sees it while it restarts (its jobs going on in the workers)."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target = free_port(), target_port
        self._server: socket.socket | None = None
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()

    def mend(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def cut(self) -> None:
        assert self._server is not None
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._server.close()
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                near, _ = server.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._links += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


@pytest.mark.timeout(90)
def test_an_answer_goes_on_through_a_core_restart(
    tab: Tab, stack: Stack, key: str, upstream: MockUpstream
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.3
    upstream.reply = " ".join(f"part{n}" for n in range(1, 41)) + "."
    cable = Cable(stack.settings.core.port)
    cable.mend()
    core = stack.settings.core.model_copy(update={"url": f"http://127.0.0.1:{cable.port}"})
    settings = stack.settings.model_copy(update={"core": core})
    try:
        with serve_in_thread(create_web(settings), settings.web.port) as web:
            sign_in(tab, web, key)
            send(tab, "Take your time")
            expect(answer(tab)).to_contain_text("part3")
            cable.cut()  # the core is away for as long as it takes to start again (seconds)
            tab.page.wait_for_timeout(7000)
            cable.mend()
            expect(answer(tab)).to_have_text(upstream.reply, timeout=30_000)
            expect(tab.page.get_by_role("button", name="Send")).to_be_visible()
            expect(tab.page.locator("#notice")).to_be_hidden()
    finally:
        cable.cut()
    tab.assert_no_errors("status of 503")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("away", ["core", "channel"])
def test_a_reload_while_patchbay_is_away_waits_for_it_signed_in(
    tab: Tab, stack: Stack, key: str, away: str
) -> None:
    cable = Cable(stack.settings.core.port)
    cable.mend()
    core = stack.settings.core.model_copy(update={"url": f"http://127.0.0.1:{cable.port}"})
    settings = stack.settings.model_copy(update={"core": core})
    try:
        with serve_in_thread(create_web(settings), settings.web.port) as web:
            sign_in(tab, web, key)
            send(tab, "Hello")
            expect(answer(tab)).to_have_text(REPLY)
            page = tab.page
            if away == "core":  # restarting: the channel cannot say whose the key is
                cable.cut()
            else:  # the channel restarting (the page itself came from a cache, or a proxy)
                page.route("**/auth/session", lambda route: route.abort("connectionrefused"))
            page.reload()
            told = CORE_AWAY if away == "core" else "patchbay cannot be reached"
            expect(page.get_by_role("alert")).to_contain_text(told)
            expect(page.get_by_text("Trying again")).to_be_visible()
            page.wait_for_timeout(2500)  # asked again meanwhile, and still away
            expect(page.get_by_role("button", name="Sign in")).to_be_hidden()
            if away == "core":
                cable.mend()
            else:
                page.unroute("**/auth/session")
            expect(answer(tab)).to_have_text(REPLY)  # back in the chat, still signed in
            expect(page.get_by_role("button", name="Sign in")).to_be_hidden()
            expect(page.locator("#notice")).to_be_hidden()
    finally:
        cable.cut()
    tab.assert_no_errors("status of 503", "net::ERR_CONNECTION_REFUSED")


def test_a_wrong_key_is_refused_plainly(tab: Tab, web: str) -> None:
    page = tab.page
    page.goto(web)
    page.get_by_label("API key").fill("pb-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That key was not accepted. Check it and try again."
    )
    expect(page.get_by_role("button", name="New chat")).to_be_hidden()
    tab.shot("wrong-key")
    tab.assert_no_errors("status of 401")


def test_a_failed_answer_is_shown_plainly(
    tab: Tab, web: str, key: str, upstream: MockUpstream
) -> None:
    upstream.mode = "error"
    sign_in(tab, web, key)
    send(tab, "Are you there?")
    expect(tab.page.locator("article.msg.assistant .state-failed")).to_have_text(
        "The answer failed: the upstream answered 500: upstream exploded"
    )
    expect(tab.page.get_by_role("button", name="Send")).to_be_visible()
    tab.shot("failed")
    tab.assert_no_errors()


def test_a_key_that_stops_working_leads_back_to_sign_in(tab: Tab, web: str, key: str) -> None:
    sign_in(tab, web, key)
    tab.page.context.clear_cookies()  # as when the session ends
    send(tab, "Still there?")
    expect(tab.page.get_by_role("alert")).to_have_text(
        "Your key is no longer accepted; sign in again."
    )
    expect(tab.page.get_by_role("button", name="Sign in")).to_be_visible()
    tab.assert_no_errors("status of 401")


def test_sign_out(tab: Tab, web: str, key: str) -> None:
    sign_in(tab, web, key)
    tab.page.get_by_role("button", name="Sign out").click()
    expect(tab.page.get_by_role("button", name="Sign in")).to_be_visible()
    tab.page.reload()
    expect(tab.page.get_by_role("button", name="Sign in")).to_be_visible()
    tab.assert_no_errors()


def test_a_sign_out_that_does_not_reach_the_channel_is_not_shown_as_done(
    tab: Tab, web: str, key: str
) -> None:
    sign_in(tab, web, key)
    page = tab.page
    page.route("**/auth/session", lambda route: route.abort())  # the channel restarts just then
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
    expect(page.get_by_role("button", name="Sign in")).to_be_hidden()  # the key is still kept
    page.unroute("**/auth/session")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    tab.assert_no_errors("net::ERR_FAILED")


def error(code: str, message: str) -> str:
    return orjson.dumps({"error": {"code": code, "message": message}}).decode()


CORE_AWAY = "core is not answering (it may be restarting); try again in a moment"
BUSY = "busy right now; try again in a moment"


@pytest.mark.parametrize(
    ("status", "body", "told"),
    [
        (429, error("queue_full", "too many turns are waiting"), BUSY),
        (503, error("store_unavailable", "the database is unavailable right now"), BUSY),
        (503, error("core_unavailable", "the core is not answering; try again shortly"), CORE_AWAY),
        (502, "<html><body>502 Bad Gateway</body></html>", "patchbay cannot be reached"),
    ],
    ids=["queue full", "core busy", "core away", "channel away"],
)
def test_a_busy_core_is_told_apart_from_one_out_of_reach(
    tab: Tab, web: str, key: str, status: int, body: str, told: str
) -> None:
    sign_in(tab, web, key)
    page = tab.page
    kind = "application/json" if body.startswith("{") else "text/html"
    page.route(
        "**/api/turns", lambda route: route.fulfill(status=status, content_type=kind, body=body)
    )
    send(tab, "Hello?")
    expect(page.get_by_role("alert")).to_contain_text(told)
    expect(page.get_by_label("Message")).to_have_value("Hello?")  # nothing typed is lost
    tab.assert_no_errors(f"status of {status}")


def test_signing_in_while_the_core_is_away_says_so(tab: Tab, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # nothing listens on the core's port
    with serve_in_thread(create_web(settings), settings.web.port) as web:
        page = tab.page
        page.goto(web)
        page.get_by_label("API key").fill("pb-any")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text(CORE_AWAY)
    tab.assert_no_errors("status of 503")


def lose_the_answer(tab: Tab, reached: list[int], calls: str = "**/api/turns**") -> None:
    """The page's next turn (or other call of `calls`) reaches the core, which stores it and
    starts its answer, but the connection breaks before the page hears back (a proxy timing out,
    the network blipping)."""
    page = tab.page
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())

    def cut_short(route: PageRoute) -> None:
        sent = route.request
        headers = {**sent.headers, "cookie": cookie}
        body = sent.post_data_buffer
        with httpx.stream(sent.method, sent.url, content=body, headers=headers) as answer:
            reached.append(answer.status_code)  # and gone before its first event
        route.abort("connectionreset")

    page.route(calls, cut_short, times=1)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("with_file", [False, True], ids=["text", "file"])
def test_a_message_sent_again_after_its_answer_was_lost_is_answered_once(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream, with_file: bool
) -> None:
    upstream.mode, upstream.delay_s = "drip", 0.2
    upstream.reply = " ".join(f"part{n}" for n in range(1, 21)) + "."
    with running_helper() as reader:
        secret = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=reader.manifest(), headers=secret)
        sign_in(tab, web, key)
        page = tab.page
        if with_file:
            page.locator("#file-input").set_input_files(
                files=[FilePayload(name="notes.txt", mimeType="text/plain", buffer=b"A note.")]
            )
        reached: list[int] = []
        lose_the_answer(tab, reached)
        answered: list[int] = []
        page.on(
            "response",
            lambda response: (
                answered.append(response.status) if "/api/turns" in response.url else None
            ),
        )
        send(tab, "Are you there?")
        expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
        expect(page.get_by_label("Message")).to_have_value("Are you there?")  # kept to send again
        page.get_by_role("button", name="Send").click()
        expect(answer(tab)).to_contain_text("part")  # the first turn's answer, as it is written
        expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
        expect(page.get_by_role("button", name="Send")).to_be_visible()
        expect(page.get_by_label("Message")).to_have_value("")
        expect(page.locator("#notice")).to_be_hidden()
        expect(page.locator("article.msg.user")).to_have_count(1)
        expect(page.locator("#chat-title")).to_have_text("Are you there?")
    assert reached == [200] and answered == [409]  # sent again: taken before, and named
    with httpx.Client(base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}) as core:
        (chat,) = core.get("/v1/chats").json()
        stored = core.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert len(upstream.requests) == 1  # asked and answered once
    assert reader.calls == (["text"] if with_file else [])  # its file read once
    tab.assert_no_errors("net::ERR_CONNECTION_RESET", "status of 409")


def regenerated_once(stack: Stack, key: str) -> list[dict[str, object]]:
    """The chat's messages, once its question has two answers (the first, and one regenerate)."""
    with httpx.Client(base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}) as core:
        (chat,) = core.get("/v1/chats").json()
        stored: list[dict[str, object]] = core.get(f"/v1/chats/{chat['id']}/messages").json()
    assert len(stored[-1]["sibling_ids"]) == 2  # type: ignore[arg-type]
    return stored


def answered_hello(tab: Tab, web: str, key: str) -> Page:
    """Signed in, with one question answered: the page."""
    sign_in(tab, web, key)
    send(tab, "Say hello")
    expect(answer(tab)).to_have_text(REPLY)
    return tab.page


def lose_a_regenerate(tab: Tab, upstream: MockUpstream) -> list[int]:
    """Click Regenerate, whose slow answer the core starts but the page never hears of (see
    `lose_the_answer`); the statuses the core answered it with."""
    upstream.mode, upstream.delay_s = "drip", 0.2
    upstream.reply = " ".join(f"part{n}" for n in range(1, 21)) + "."
    reached: list[int] = []
    lose_the_answer(tab, reached, "**/api/messages/*/regenerate")
    tab.page.get_by_role("button", name="Regenerate").click()
    expect(tab.page.get_by_role("alert")).to_contain_text("cannot be reached")
    return reached


def resumed_from(page: Page) -> list[str]:
    """The Last-Event-ID of each of the page's requests for a job's events from now on."""
    ids: list[str] = []
    page.on(
        "request",
        lambda request: (
            ids.append(request.headers.get("last-event-id", ""))
            if request.url.endswith("/events")
            else None
        ),
    )
    return ids


def regenerate_statuses(page: Page) -> list[int]:
    """The statuses of the page's regenerate calls from now on, as they come."""
    statuses: list[int] = []
    page.on(
        "response",
        lambda response: (
            statuses.append(response.status) if response.url.endswith("/regenerate") else None
        ),
    )
    return statuses


@pytest.mark.timeout(90)
def test_a_regenerate_clicked_again_after_its_answer_was_lost_is_answered_once(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream
) -> None:
    page = answered_hello(tab, web, key)
    reached = lose_a_regenerate(tab, upstream)
    answered = regenerate_statuses(page)
    page.get_by_role("button", name="Regenerate").click()
    expect(answer(tab)).to_contain_text("part")  # the first regenerate's answer, being written
    expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
    expect(page.locator(".branch-count")).to_have_text("2 / 2")
    expect(page.locator("#notice")).to_be_hidden()
    assert reached == [200] and answered == [409]  # clicked again: taken before, and named
    regenerated_once(stack, key)
    assert len(upstream.requests) == 2  # the question, answered again once
    page.get_by_role("button", name="Regenerate").click()  # confirmed: a new one is new
    expect(page.locator(".branch-count")).to_have_text("3 / 3")
    expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
    tab.assert_no_errors("net::ERR_CONNECTION_RESET", "status of 409")


PENDING_REGENERATE = "sessionStorage.getItem('patchbay.regenerate')"


@pytest.mark.timeout(90)
def test_a_regenerate_whose_answer_was_lost_is_followed_after_a_reload(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream
) -> None:
    page = answered_hello(tab, web, key)
    reached = lose_a_regenerate(tab, upstream)
    resumed = resumed_from(page)
    page.reload()
    expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator(".branch-count")).to_have_text("2 / 2")
    assert reached == [200] and resumed[:1] == ["0"]  # its answer followed from its start
    assert page.evaluate(PENDING_REGENERATE) is None  # taken: nothing is left to ask again
    regenerated_once(stack, key)
    page.get_by_role("button", name="Regenerate").click()  # a new one is new
    expect(page.locator(".branch-count")).to_have_text("3 / 3")
    tab.assert_no_errors("net::ERR_CONNECTION_RESET")


@pytest.mark.timeout(90)
def test_a_regenerate_asked_again_after_a_reload_is_answered_once(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream
) -> None:
    """Clicked, then the page reloaded before the core took it (it gets there later): asked again
    for the same answer, it is the same regenerate, whose answer the page then follows."""
    page = answered_hello(tab, web, key)
    upstream.reply = "A second, better answer."
    sent: list[tuple[str, bytes | None]] = []

    def held_up(route: PageRoute) -> None:  # on its way still as the page goes
        sent.append((route.request.url, route.request.post_data_buffer))
        route.abort("connectionreset")

    page.route("**/api/messages/*/regenerate", held_up, times=1)
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
    page.reload()
    expect(answer(tab)).to_have_text(REPLY)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    ((url, body),) = sent
    cookie = {"patchbay_key": key}
    arrived = httpx.post(
        url,
        content=body,
        headers={**PAGE, "Accept": "text/event-stream", "Content-Type": "application/json"},
        cookies=cookie,
        timeout=30,
    )
    assert arrived.status_code == 200, arrived.text
    answered = regenerate_statuses(page)
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".branch-count")).to_have_text("2 / 2")
    expect(answer(tab)).to_have_text("A second, better answer.")
    assert answered == [409]  # the same regenerate: taken before, and named
    regenerated_once(stack, key)
    assert len(upstream.requests) == 2
    tab.assert_no_errors("net::ERR_CONNECTION_RESET", "status of 409", "status of 404")


def test_a_regenerate_not_confirmed_is_forgotten_on_signing_out(
    tab: Tab, web: str, key: str
) -> None:
    page = answered_hello(tab, web, key)
    page.route("**/api/messages/*/regenerate", lambda route: route.abort("connectionreset"))
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
    assert page.evaluate(PENDING_REGENERATE) is not None  # kept for a reload
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate(PENDING_REGENERATE) is None
    tab.assert_no_errors("net::ERR_CONNECTION_RESET")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("reached", "files"),
    [(True, ""), (True, "lost"), (False, ""), (False, "lost"), (False, "attached again")],
    ids=["reached", "reached-file-lost", "not-reached", "not-reached-file", "not-reached-again"],
)
def test_a_message_whose_send_failed_is_sent_once_after_a_reload(
    tab: Tab, web: str, key: str, stack: Stack, upstream: MockUpstream, reached: bool, files: str
) -> None:
    note = FilePayload(name="notes.txt", mimeType="text/plain", buffer=b"A note.")
    upstream.mode, upstream.delay_s = "drip", 0.2
    upstream.reply = " ".join(f"part{n}" for n in range(1, 16)) + "."
    with running_helper() as reader:
        secret = {HELPER_KEY_HEADER: helper_key(stack.settings.installation_secret())}
        httpx.post(f"{stack.core_url}/v1/helpers", json=reader.manifest(), headers=secret)
        sign_in(tab, web, key)
        page = tab.page
        if files:
            page.locator("#file-input").set_input_files(files=[note])
        got: list[int] = []
        if reached:
            lose_the_answer(tab, got)
        else:  # the channel is restarting: nothing reaches the core
            page.route("**/api/turns**", lambda route: route.abort("connectionreset"), times=1)
        posted: list[int] = []
        page.on(
            "response",
            lambda response: (
                posted.append(response.status) if "/api/turns" in response.url else None
            ),
        )
        send(tab, "Are you there?")
        expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
        page.reload()
        if reached:  # the page finds that the core took it: its answer, not the box
            expect(answer(tab)).to_contain_text("part")
            expect(page.get_by_role("button", name="Stop")).to_be_visible()
        else:
            expect(page.get_by_label("Message")).to_have_value("Are you there?")
            notice = page.get_by_role("alert")
            expect(notice).to_contain_text("may not have been sent, so it is back in the box")
            if files:
                expect(notice).to_contain_text("attach notes.txt again")
            expect(page.locator("#attachments li")).to_have_count(0)
            if files == "attached again":
                page.locator("#file-input").set_input_files(files=[note])
            page.get_by_role("button", name="Send").click()
        expect(answer(tab)).to_have_text(upstream.reply, timeout=20_000)
        expect(page.get_by_label("Message")).to_have_value("")
        expect(page.locator("#notice")).to_be_hidden()
        expect(page.locator("#chat-title")).to_have_text("Are you there?")
        page.reload()  # confirmed: nothing comes back
        expect(answer(tab)).to_have_text(upstream.reply)
        expect(page.get_by_label("Message")).to_have_value("")
        expect(page.locator("#notice")).to_be_hidden()
    with httpx.Client(base_url=stack.core_url, headers={"Authorization": f"Bearer {key}"}) as core:
        (chat,) = core.get("/v1/chats").json()
        stored = core.get(f"/v1/chats/{chat['id']}/messages").json()
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert len(upstream.requests) == 1
    assert posted == ([] if reached else [200])  # what arrived is not sent again
    # the file goes with the message the core took: the first send's, or the one sent again
    sent_with_file = files and (reached or files == "attached again")
    assert reader.calls == (["text"] if sent_with_file else [])
    assert bool(stored[0]["attachments"]) == bool(sent_with_file)
    tab.assert_no_errors("net::ERR_CONNECTION_RESET", "status of 404")


def test_the_box_is_kept_over_a_reload_and_goes_on_signing_out(
    tab: Tab, web: str, key: str
) -> None:
    sign_in(tab, web, key)
    page, prompt = tab.page, tab.page.get_by_label("Message")
    prompt.fill("Half a thought")
    page.reload()
    expect(prompt).to_have_value("Half a thought")  # a draft, never sent: no notice
    expect(page.locator("#notice")).to_be_hidden()
    page.route("**/api/turns", lambda route: route.abort("connectionreset"), times=1)
    send(tab, "A whole thought")
    expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").fill(key)  # someone else, maybe, in the same tab
    page.get_by_role("button", name="Sign in").click()
    expect(prompt).to_be_visible()
    expect(prompt).to_have_value("")
    page.reload()
    expect(prompt).to_have_value("")
    expect(page.locator("#notice")).to_be_hidden()
    tab.assert_no_errors("net::ERR_CONNECTION_RESET")


def post_turn(browser: httpx.Client, turn: Mapping[str, object], *, upload: bool) -> httpx.Response:
    """A turn as the page sends it: JSON, or a form's `turn` field (with files)."""
    if upload:  # multipart/form-data, with no file here
        form = {"turn": (None, orjson.dumps(turn))}
        return browser.post("/api/turns/upload", files=form, headers=PAGE)
    return browser.post("/api/turns", json=turn, headers=PAGE)


@pytest.mark.parametrize("upload", [False, True], ids=["json", "upload"])
def test_the_channel_makes_one_turn_of_a_message_sent_twice(
    web: str, key: str, stack: Stack, upload: bool
) -> None:
    turn = {"text": "hi", "channel": "web", "delivery_id": "0f8e4c2a9b7d41e3a5c6d8e9f0a1b2c3"}
    with httpx.Client(base_url=web, cookies={"patchbay_key": key}) as browser:
        first = post_turn(browser, turn, upload=upload)
        again = post_turn(browser, turn, upload=upload)
        other = post_turn(browser, {**turn, "delivery_id": "1" * 32}, upload=upload)
    assert first.status_code == 202, first.text
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_delivery"
    assert again.json()["error"]["job_id"] == first.json()["job_id"]
    assert other.status_code == 202, other.text
    assert len(stack.chats()) == 2


@pytest.mark.parametrize("upload", [False, True], ids=["json", "upload"])
@pytest.mark.parametrize(
    "delivery_id",
    [
        "",
        "a1b2c3",
        "x" * 65,
        "0f8e4c2a 9b7d41e3a5c6d8e9",
        "0f8e4c2a9b7d41e3\x00",
        12345678901234567890,
    ],
    ids=["empty", "short", "long", "space", "nul", "number"],
)
def test_a_message_id_the_page_would_not_make_is_a_400(
    web: str, key: str, stack: Stack, upload: bool, delivery_id: object
) -> None:
    turn = {"text": "hi", "channel": "web", "delivery_id": delivery_id}
    with httpx.Client(base_url=web, cookies={"patchbay_key": key}) as browser:
        refused = post_turn(browser, turn, upload=upload)
    assert refused.status_code == 400, refused.text
    assert "a message's id is 16 to 64" in refused.json()["error"]["message"]
    assert stack.chats() == []


def test_the_page_works_at_phone_width(
    browser: Browser, tmp_path: Path, web: str, key: str
) -> None:
    with open_tab(browser, tmp_path, viewport=PHONE) as phone:
        sign_in(phone, web, key)
        page = phone.page
        new_chat = page.get_by_role("button", name="New chat")
        expect(new_chat).not_to_be_in_viewport()  # the chat list slides away
        send(phone, "Hi from my phone")
        expect(answer(phone)).to_have_text(REPLY)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        phone.shot("phone-chat")
        page.get_by_role("button", name="Show chats").click()
        expect(new_chat).to_be_in_viewport(ratio=1)  # slid in all the way
        expect(page.locator("#chat-list").get_by_text("Hi from my phone")).to_be_visible()
        phone.shot("phone-chats")
        page.locator("#chat-list").get_by_text("Hi from my phone").click()
        expect(new_chat).not_to_be_in_viewport()
        phone.assert_no_errors()


def test_the_page_is_served_with_a_strict_content_security_policy(web: str) -> None:
    page = httpx.get(web + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert (
        "frame-ancestors 'none'" in policy and page.headers["x-content-type-options"] == "nosniff"
    )
    assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []  # no inline script
    assert "http" not in " ".join(re.findall(r'(?:src|href)="([^"]*)"', page.text))  # no CDN
    for asset in (
        "/static/js/main.js",
        "/static/vendor/marked.esm.js",
        "/static/vendor/purify.es.js",
    ):
        script = httpx.get(web + asset)
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(web + "/healthz").json()["status"] == "ok"


def test_the_api_takes_calls_from_the_signed_in_page_only(web: str, key: str) -> None:
    with httpx.Client(base_url=web) as browser:
        assert browser.get("/api/me").status_code == 403  # another site's form or script
        assert browser.get("/api/me", headers=PAGE).json()["error"]["code"] == "invalid_api_key"
        assert browser.get("/auth/session", headers=PAGE).json() == {"user": None}
        wrong = browser.post("/auth/session", json={"key": "pb-wrong"}, headers=PAGE)
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers

        signed_in = browser.post("/auth/session", json={"key": key}, headers=PAGE)
        assert signed_in.json()["user"]["name"] == "alice"
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        me = browser.get("/api/me", headers=PAGE)
        assert me.json()["name"] == "alice"
        assert me.headers["cache-control"] == "no-store"  # not kept on disk after signing out
        session = browser.get("/auth/session", headers=PAGE)
        assert session.json()["user"]["name"] == "alice"
        assert session.headers["cache-control"] == "no-store"
        assert browser.get("/").headers["cache-control"] == "no-cache"
        # only what the page uses passes to the core
        assert browser.get("/api/users", headers=PAGE).status_code == 404
        assert browser.get("/api/chats/%2E%2E", headers=PAGE).status_code == 404
        assert browser.post("/api/models", json={}, headers=PAGE).status_code == 404
        never_sent = {"channel": "web", "delivery_id": "0" * 32}
        lookup = browser.get("/api/deliveries/turn", params=never_sent, headers=PAGE)
        assert lookup.json()["error"]["code"] == "delivery_not_found"  # the core's answer
        answered = {**never_sent, "user_id": "x"}  # the core's own, for channel modules
        assert (
            browser.post("/api/deliveries/answered", json=answered, headers=PAGE).status_code == 404
        )

        assert browser.delete("/auth/session", headers=PAGE).status_code == 204
        assert browser.get("/api/me", headers=PAGE).status_code == 401


@pytest.mark.parametrize("path", ["/api/turns/upload", "/api/turns"])
def test_a_large_body_is_refused_before_it_is_read_without_a_valid_key(web: str, path: str) -> None:
    # Each such body would be held whole in the channel's memory (up to `max_body_bytes`) before
    # the core refused the key: a few dozen of them at once exhaust it.
    port = int(web.rsplit(":", 1)[1])
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Patchbay-Web: 1\r\n"
        "Cookie: patchbay_key=pb-not-a-real-key\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 30000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"x" * 1_000_000)  # and then nothing more for now
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 401 Unauthorized"


def test_a_core_that_is_away_is_reported_as_unavailable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # nothing listens on the core's port
    with serve_in_thread(create_web(settings), settings.web.port) as url:
        signed = httpx.post(url + "/auth/session", json={"key": "pb-any"}, headers=PAGE)
        proxied = httpx.get(url + "/api/chats", headers=PAGE, cookies={"patchbay_key": "pb-any"})
    for response in (signed, proxied):
        assert response.status_code == 503 and response.headers["retry-after"]
        assert response.json()["error"]["code"] == "core_unavailable"


def test_the_channel_reports_to_the_core(stack: Stack, web: str) -> None:
    deadline = time.monotonic() + 15
    with stack.admin() as admin:
        while True:
            found = {m["name"]: m for m in admin.get("/v1/status").json()["modules"]}
            if found.get("web", {}).get("state") == "up":
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
    assert found["web"]["url"] == web and found["web"]["kind"] == "channel"


@contextmanager
def channel_web(env: dict[str, str]) -> Iterator[str]:
    """`patchbay channel web` in its own process, as deployed; yields its URL."""
    url = f"http://127.0.0.1:{env['PATCHBAY_WEB__PORT']}"
    process = subprocess.Popen(
        [PATCHBAY, "channel", "web"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)
        assert process.stderr is not None
        process.stderr.close()


def test_patchbay_channel_web_serves_the_page(tmp_path: Path) -> None:
    with channel_web(up_env(tmp_path, PATCHBAY_ADMIN_KEY=ADMIN_KEY)) as url:
        page = httpx.get(url + "/")
    assert page.status_code == 200 and "Sign in with your API key" in page.text


def test_the_key_cookie_is_secure_behind_an_https_proxy(
    tmp_path: Path, stack: Stack, key: str
) -> None:
    # The channel speaks plain HTTP, so TLS ends at a reverse proxy in front of it; the browser's
    # sign-in names the page it comes from (`Origin`), an https one.
    env = up_env(tmp_path, PATCHBAY_CORE__PORT=str(stack.settings.core.port))
    with channel_web(env) as url:
        https = {**PAGE, "Origin": "https://chat.example.org", "X-Forwarded-Proto": "https"}
        behind_tls = httpx.post(url + "/auth/session", json={"key": key}, headers=https)
        plain = httpx.post(
            url + "/auth/session", json={"key": key}, headers={**PAGE, "Origin": url}
        )
    assert behind_tls.status_code == 200 and plain.status_code == 200
    assert "secure" in behind_tls.headers["set-cookie"].lower()  # never sent over plain http
    assert "secure" not in plain.headers["set-cookie"].lower()  # an http page keeps its cookie
