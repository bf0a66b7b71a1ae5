"""Files for the conversion helpers to read, made by libraries here: PDF, DOCX, PNG, WAV, MP4."""

from __future__ import annotations

import io
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

FONT = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"


def text_image(
    lines: list[str], *, size: tuple[int, int] = (1000, 300), px: int = 44
) -> Image.Image:
    """Black DejaVu Sans lines on white, large enough to read at a glance."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), px)
    for number, line in enumerate(lines):
        draw.text((30, 30 + number * int(px * 1.6)), line, font=font, fill="black")
    return image


def png(image: Image.Image, *, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with a text layer: each page's lines in Helvetica."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=16)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def scanned_pdf(images: list[Image.Image], *, text_first: list[str] | None = None) -> bytes:
    """A PDF whose pages are pictures only (a scan), after an optional page of real text."""
    from fpdf import FPDF

    pdf = FPDF()
    if text_first:
        pdf.set_font("Helvetica", size=16)
        pdf.add_page()
        for line in text_first:
            pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    for image in images:
        pdf.add_page()
        pdf.image(image, x=10, y=20, w=190)
    return bytes(pdf.output())


def docx(title: str, paragraph: str, rows: list[tuple[str, str]]) -> bytes:
    """A Word document: a heading, a paragraph with a bold word, and a table."""
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading(title, level=1)
    body = document.add_paragraph(paragraph + " ")
    body.add_run("Friday").bold = True
    table = document.add_table(rows=len(rows), cols=2)
    for row, (left, right) in zip(table.rows, rows, strict=True):
        row.cells[0].text = left
        row.cells[1].text = right
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx(sheet: str, rows: list[tuple[object, ...]]) -> bytes:
    """A workbook with one named sheet of rows."""
    from openpyxl import Workbook  # type: ignore[import-untyped]  # openpyxl ships no types

    workbook = Workbook()
    worksheet = workbook.active
    worksheet.title = sheet
    for row in rows:
        worksheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def pptx(title: str, body: str) -> bytes:
    """A deck of one title-and-content slide."""
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = title
    slide.placeholders[1].text = body
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def espeak() -> str | None:
    return shutil.which("espeak-ng")


def spoken_wav(text: str, *, words_per_minute: int = 140) -> bytes:
    """`text` read by espeak-ng (American English), as a WAV file."""
    binary = espeak()
    assert binary is not None, "espeak-ng is not installed"
    result = subprocess.run(
        [binary, "-v", "en-us", "-s", str(words_per_minute), "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def silent_mp3(seconds: int) -> bytes:
    """`seconds` of silence as an 8 kb/s MP3 (1 KB a second): one minute encoded, then its
    frames repeated (no Xing header, so a reader counts them all)."""
    import av
    import numpy as np

    output = io.BytesIO()
    options = {"write_xing": "0", "id3v2_version": "0"}
    with av.open(output, mode="w", format="mp3", options=options) as out:
        stream = out.add_stream("libmp3lame", rate=8000)
        stream.layout = "mono"
        stream.bit_rate = 8000
        for second in range(60):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 8000), dtype=np.int16), format="s16", layout="mono"
            )
            frame.rate, frame.pts = 8000, second * 8000
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    minute = output.getvalue()
    return minute * (seconds // 60)


def video(wav: bytes, picture: Image.Image, *, fps: int = 10) -> bytes:
    """An MP4 (H.264 + AAC) showing `picture` for as long as `wav` lasts, made with PyAV."""
    import av

    output = io.BytesIO()
    with (
        av.open(io.BytesIO(wav), mode="r") as source,
        av.open(output, mode="w", format="mp4") as out,
    ):
        audio_in = source.streams.audio[0]
        base = audio_in.time_base
        seconds = float(audio_in.duration * base) if audio_in.duration and base else 5.0
        audio_out = out.add_stream("aac", rate=audio_in.rate)
        audio_out.layout = "mono"
        frames_out = out.add_stream("libx264", rate=fps)
        frames_out.width, frames_out.height = picture.size
        frames_out.pix_fmt = "yuv420p"
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=audio_in.rate)
        for frame in source.decode(audio_in):
            for converted in resampler.resample(frame):
                converted.pts = None
                out.mux(audio_out.encode(converted))
        out.mux(audio_out.encode(None))
        for index in range(max(1, round(seconds * fps))):
            still = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
            still.pts = index
            still.time_base = Fraction(1, fps)
            out.mux(frames_out.encode(still))
        out.mux(frames_out.encode(None))
    return output.getvalue()
