"""The built-in to-text helpers, served on loopback, converting files these tests make: a PDF and
a DOCX written by libraries, a scanned PDF, PNG/JPEG with rendered text, speech by espeak-ng and an
MP4 made with PyAV. Each model loads once per module."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest

from patchbay.helpers.builtin.documents import DocumentOptions, DocumentsHelper
from patchbay.helpers.builtin.ocr import OcrHelper, OcrOptions
from patchbay.helpers.builtin.speech import SpeechHelper, SpeechOptions
from patchbay.helpers.builtin.video import VideoHelper, VideoOptions
from patchbay.helpers.isolated import Isolated
from patchbay.helpers.runner import Serving, build_app
from patchbay.helpers.sdk import Helper
from patchbay.tokens import helper_key
from tests.conftest import free_port
from tests.integration.test_helper_sdk import wait_for
from tests.support import media
from tests.support.servers import serve_in_thread
from tests.support.stack import Stack
from tests.support.stuck_reader import (
    STUCK,
    StuckImageReader,
    StuckReader,
    StuckTranscriber,
    StuckVideoReader,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
SENTENCE = "Good morning. The meeting starts at nine o'clock. Please bring your notes and a pencil."
SPOKEN = {"good", "morning", "meeting", "please", "bring", "your", "notes", "pencil"}
SLIDE = ["Welcome to the demo", "Penguins live in Antarctica"]
STUCK_TIMEOUT_S = 15  # over a reader's start (its models loaded) and a small file's conversion


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def heard(text: str) -> int:
    """How many of the spoken words came back, plural or not (espeak's voice is robotic)."""
    return len({w.rstrip("s") for w in SPOKEN} & {w.rstrip("s") for w in words(text)})


def peak_growth_mb(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """`call()`'s answer, and how far this process's peak memory rose above its size before
    (the helpers under test serve in a thread of this process)."""
    status = Path("/proc/self/status")
    before = int(re.findall(r"VmRSS:\s+(\d+)", status.read_text())[0])
    Path("/proc/self/clear_refs").write_text("5")  # restart the high-water mark (VmHWM) here
    response = call()
    peak = int(re.findall(r"VmHWM:\s+(\d+)", status.read_text())[0])
    return response, (peak - before) / 1024


def need_espeak() -> None:
    if media.espeak() is None:
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is missing: scripts/install dev installs it")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")


@contextmanager
def serving(helper: Helper) -> Iterator[str]:
    port = free_port()
    with serve_in_thread(build_app(helper, Serving(port=port)), port, timeout_s=60) as url:
        yield url


def convert(url: str, name: str, data: bytes, media_type: str) -> httpx.Response:
    return httpx.post(
        f"{url}/capabilities/{name}",
        content=data,
        headers={"Content-Type": media_type},
        timeout=120,
    )


def stuck_then_next(
    helper: DocumentsHelper | OcrHelper | SpeechHelper | VideoHelper,
    stuck_reader: Callable[..., object],
    capability: str,
    media_type: str,
    next_file: bytes,
) -> tuple[httpx.Response, httpx.Response]:
    """`helper`'s answers to a file its reader never finishes, then to `next_file`, with
    `stuck_reader` (its reader's class, stuck on STUCK) in its child in place of its reader."""
    name = f"stuck {helper.name} reader"
    helper.reader = Isolated(partial(stuck_reader, helper.options), name=name)
    with serving(helper) as url:
        stuck = convert(url, capability, STUCK, media_type)
        return stuck, convert(url, capability, next_file, media_type)


@pytest.fixture(scope="module")
def whisper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("whisper")


@pytest.fixture(scope="module")
def documents() -> Iterator[str]:
    with serving(DocumentsHelper()) as url:
        yield url


@pytest.fixture(scope="module")
def ocr() -> Iterator[str]:
    with serving(OcrHelper()) as url:
        yield url


@pytest.fixture(scope="module")
def speech(whisper_cache: Path) -> Iterator[str]:
    with serving(SpeechHelper(SpeechOptions(cache_dir=whisper_cache))) as url:
        yield url


@pytest.fixture(scope="module")
def spoken() -> bytes:
    need_espeak()
    return media.spoken_wav(SENTENCE)


# documents


def test_a_pdf_with_text_becomes_markdown(documents: str) -> None:
    pdf = media.text_pdf(
        [["Quarterly report", "Revenue grew by twelve percent"], ["Second page about penguins"]]
    )
    result = convert(documents, "document-to-text", pdf, PDF).json()
    assert (result["format"], result["pages"]) == ("markdown", 2)
    assert {"quarterly", "report", "revenue", "twelve", "penguins"} <= words(result["text"])


def test_a_scanned_pdf_page_is_read_by_ocr(documents: str) -> None:
    scan = media.text_image(["Invoice 4217", "Total due 98 dollars"])
    pdf = media.scanned_pdf([scan], text_first=["Cover letter"])
    result = convert(documents, "document-to-text", pdf, PDF).json()
    assert result["pages"] == 2
    assert "page 2: scanned, read by OCR" in result["text"]
    assert {"cover", "letter", "invoice", "4217", "total", "due", "98"} <= words(result["text"])


def test_a_docx_keeps_heading_bold_and_table(documents: str) -> None:
    docx = media.docx("Meeting Notes", "We meet on", [("Owner", "Alice"), ("Budget", "1200")])
    text = convert(documents, "document-to-text", docx, DOCX).json()["text"]
    assert "# Meeting Notes" in text
    assert "**Friday**" in text
    assert "| Owner | Alice |" in text


def test_a_document_that_never_ends_is_stopped_and_the_next_one_is_read() -> None:
    helper = DocumentsHelper(DocumentOptions(timeout_s=5))  # it loads nothing at its start
    stuck, fine = stuck_then_next(helper, StuckReader, "document-to-text", "text/plain", b"words")
    assert stuck.status_code == 504, stuck.text
    assert fine.status_code == 200 and fine.json()["text"] == "words", fine.text


def test_a_spreadsheet_and_a_deck(documents: str) -> None:
    workbook = media.xlsx("Sales", [("Region", "Units"), ("North", 120), ("South", 75)])
    sheet = convert(documents, "document-to-text", workbook, XLSX).json()["text"]
    assert "## Sales" in sheet and "| North | 120 |" in sheet
    deck = media.pptx("Roadmap 2027", "Ship the helpers")
    slides = convert(documents, "document-to-text", deck, PPTX).json()["text"]
    assert "# Roadmap 2027" in slides and "Ship the helpers" in slides


@pytest.mark.parametrize(
    ("body", "media_type", "expected"),
    [
        (b"<h1>Menu</h1><ul><li>apples</li><li><b>pears</b></li></ul>", "text/html", "# Menu"),
        (b"name,qty\napples,3\npears,5\n", "text/csv", "| apples | 3 |"),
        (b"# Notes\n\n- one\n- two\n", "text/markdown", "- two"),
    ],
)
def test_html_csv_and_markdown(documents: str, body: bytes, media_type: str, expected: str) -> None:
    text = convert(documents, "document-to-text", body, f"{media_type}; charset=utf-8").json()[
        "text"
    ]
    assert expected in text


@pytest.mark.parametrize(
    ("body", "media_type", "status", "code"),
    [
        (b"%PDF-1.4 not really", PDF, 422, "unreadable_input"),
        (b"PK\x03\x04 a broken zip", DOCX, 422, "unreadable_input"),
        (b"", PDF, 400, "empty_input"),
        (b"\x89PNG\r\n", "image/png", 400, "unsupported_media_type"),
    ],
)
def test_bad_documents_get_clear_errors(
    documents: str, body: bytes, media_type: str, status: int, code: str
) -> None:
    response = convert(documents, "document-to-text", body, media_type)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_an_oversize_file_is_refused_with_413() -> None:
    with serving(DocumentsHelper(DocumentOptions(max_body_bytes=10_000))) as url:
        response = convert(url, "document-to-text", b"a," * 6_000, "text/csv")
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")


def test_a_huge_scanned_page_is_read_at_a_smaller_scale(documents: str) -> None:
    # A 13 KB PDF with a 2 m square page: at the usual scale its picture would be 128 million
    # pixels (500 MB), and the OCR limit then refused the whole document, its text page too.
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=16)
    pdf.add_page()
    pdf.cell(0, 10, "Cover letter")
    pdf.add_page(format=(2000, 2000))
    pdf.image(media.text_image(["Invoice 4217", "Total due 98 dollars"]), x=10, y=20, w=1900)
    response = convert(documents, "document-to-text", bytes(pdf.output()), PDF)
    assert response.status_code == 200, response.text
    assert {"cover", "letter", "invoice", "4217", "total", "due"} <= words(response.json()["text"])


def test_a_pdf_of_too_many_pages_is_refused_before_it_is_read(documents: str) -> None:
    # Each page is a few hundred bytes here (a few bytes in object streams) and reading it takes
    # milliseconds: a 64 MB PDF kept the helper busy for hours, long after its timeout.
    pdf = media.text_pdf([[f"page {n}"] for n in range(2001)])
    response = convert(documents, "document-to-text", pdf, PDF)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    assert "2,001 pages, over the 2,000" in response.json()["error"]["message"]


def docx_bomb(unpacked_mb: int) -> bytes:
    """A DOCX of a few hundred KB whose document.xml unpacks to `unpacked_mb` MB (blanks)."""
    source = zipfile.ZipFile(io.BytesIO(media.docx("Bomb", "Boom", [("a", "b")])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for info in source.infolist():
            body = source.read(info)
            if info.filename != "word/document.xml":
                bomb.writestr(info, body)
                continue
            head, tag, tail = body.partition(b"<w:body>")
            with bomb.open(info.filename, "w", force_zip64=True) as part:
                part.write(head + tag)
                for _ in range(unpacked_mb):
                    part.write(b" " * (1 << 20))
                part.write(tail)
    return out.getvalue()


def test_a_zip_bomb_document_is_refused_unopened(documents: str) -> None:
    bomb = docx_bomb(110)
    assert len(bomb) < 1_000_000
    response, growth = peak_growth_mb(lambda: convert(documents, "document-to-text", bomb, DOCX))
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    assert "unpacks to" in response.json()["error"]["message"]
    assert growth < 100, growth
    assert convert(documents, "document-to-text", docx_bomb(1), DOCX).status_code == 200


def test_the_core_converts_through_a_registered_documents_helper(stack: Stack) -> None:
    port = free_port()
    key = helper_key(stack.settings.installation_secret())
    app = build_app(DocumentsHelper(), Serving(port=port, core_url=stack.core_url, key=key))
    docx = media.docx("Travel Plan", "We leave on", [("City", "Lisbon")])
    with serve_in_thread(app, port), stack.admin() as admin:
        wait_for(lambda: bool(admin.get("/v1/helpers").json()))
        result = admin.post("/v1/convert", content=docx, headers={"Content-Type": DOCX})
    assert result.status_code == 200, result.text
    assert "# Travel Plan" in result.json()["text"] and "Lisbon" in result.json()["text"]


# images


@pytest.mark.parametrize(("format", "media_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_text_in_an_image_is_read(ocr: str, format: str, media_type: str) -> None:
    image = media.text_image(["Patchbay reads images", "Order 5531 ships on Tuesday"])
    result = convert(ocr, "image-to-text", media.png(image, format=format), media_type).json()
    assert result["format"] == "plain"
    assert {"patchbay", "reads", "images", "order", "5531", "ships", "tuesday"} <= words(
        result["text"]
    )


def test_a_corrupt_image_is_a_422(ocr: str) -> None:
    response = convert(ocr, "image-to-text", b"\x89PNG\r\n\x1a\n broken", "image/png")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "unreadable_input")


@pytest.mark.timeout(60)
def test_an_image_never_read_to_its_end_is_stopped_and_the_next_one_is_read() -> None:
    image = media.png(media.text_image(["Order 5531 ships on Tuesday"]))
    helper = OcrHelper(OcrOptions(timeout_s=STUCK_TIMEOUT_S))
    stuck, fine = stuck_then_next(helper, StuckImageReader, "image-to-text", "image/png", image)
    assert stuck.status_code == 504, stuck.text
    assert fine.status_code == 200, fine.text
    assert {"order", "5531", "tuesday"} <= words(fine.json()["text"])


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(ocr: str) -> None:
    # 81 million white pixels: 250 KB as a PNG, 243 MB once decoded.
    from PIL import Image

    bomb = media.png(Image.new("RGB", (9000, 9000), "white"))
    response, growth = peak_growth_mb(lambda: convert(ocr, "image-to-text", bomb, "image/png"))
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    assert "9000x9000" in response.json()["error"]["message"]
    assert growth < 100, growth


# speech and video


def test_speech_in_a_wav_is_transcribed_while_the_helper_stays_responsive(
    speech: str, spoken: bytes
) -> None:
    # The model runs in a child process, not on the event loop: health answers again and again
    # while it works. On a blocked loop one health call would wait out the whole transcription.
    waits = []
    with ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        pending = pool.submit(convert, speech, "speech-to-text", spoken, "audio/wav")
        while not pending.done():
            started = time.monotonic()
            assert httpx.get(f"{speech}/health", timeout=30).status_code == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
        result = pending.result().json()
        took = time.monotonic() - began
    assert len(waits) >= 3 and max(waits) < took / 3, (waits, took)
    assert heard(result["text"]) >= 6, result["text"]
    assert 4 < result["duration_s"] < 12


def test_corrupt_audio_is_a_422(speech: str) -> None:
    response = convert(speech, "speech-to-text", b"RIFF\x00\x00WAVE nonsense", "audio/wav")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "unreadable_input")


def test_hours_of_audio_in_a_few_megabytes_are_refused(speech: str) -> None:
    # 7 MB of MP3 that decodes to 460 MB of samples, and to hours of transcribing.
    long = media.silent_mp3(2 * 3600 + 60)
    assert len(long) < 8_000_000
    response, growth = peak_growth_mb(lambda: convert(speech, "speech-to-text", long, "audio/mpeg"))
    assert (response.status_code, response.json()["error"]["code"]) == (413, "payload_too_large")
    assert "2:00:00" in response.json()["error"]["message"]
    assert growth < 100, growth


@pytest.mark.timeout(60)
def test_audio_never_decoded_to_its_end_is_stopped_and_the_next_file_is_transcribed(
    whisper_cache: Path, spoken: bytes
) -> None:
    helper = SpeechHelper(SpeechOptions(cache_dir=whisper_cache, timeout_s=STUCK_TIMEOUT_S))
    stuck, fine = stuck_then_next(helper, StuckTranscriber, "speech-to-text", "audio/wav", spoken)
    assert stuck.status_code == 504, stuck.text
    assert fine.status_code == 200, fine.text
    assert heard(fine.json()["text"]) >= 6, fine.text


def test_a_video_gives_its_transcript_and_the_text_on_screen(
    whisper_cache: Path, spoken: bytes
) -> None:
    clip = media.video(spoken, media.text_image(SLIDE, size=(960, 540), px=52))
    helper = VideoHelper(VideoOptions(speech=SpeechOptions(cache_dir=whisper_cache), frames=3))
    with serving(helper) as url:
        result = convert(url, "video-to-text", clip, "video/mp4").json()
    transcript, _, screen = result["text"].partition("## Text on screen")
    assert transcript.startswith("## Transcript")
    assert heard(transcript) >= 6, transcript
    assert {"welcome", "demo", "penguins", "antarctica"} <= words(screen)
    assert screen.count("Penguins") == 1  # the same slide is read once
    assert 4 < result["duration_s"] < 12


@pytest.mark.timeout(90)
def test_a_video_never_read_to_its_end_is_stopped_and_the_next_one_is_read(
    whisper_cache: Path, spoken: bytes
) -> None:
    clip = media.video(spoken, media.text_image(SLIDE, size=(960, 540), px=52))
    speech = SpeechOptions(cache_dir=whisper_cache)
    timeout_s = 2 * STUCK_TIMEOUT_S  # two models to load, and more to read
    helper = VideoHelper(VideoOptions(speech=speech, frames=3, timeout_s=timeout_s))
    stuck, fine = stuck_then_next(helper, StuckVideoReader, "video-to-text", "video/mp4", clip)
    assert stuck.status_code == 504, stuck.text
    assert fine.status_code == 200, fine.text
    transcript, _, screen = fine.json()["text"].partition("## Text on screen")
    assert heard(transcript) >= 6, transcript
    assert {"welcome", "demo", "penguins", "antarctica"} <= words(screen)
