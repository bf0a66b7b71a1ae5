"""Documents helper: PDF, DOCX, XLSX, PPTX, HTML, Markdown and CSV to Markdown, offline.

markitdown does the converting; a PDF page without a text layer (a scan) is rendered with
pypdfium2 and read by the OCR helper's engine. Both run in a child process (`Isolated`).
"""

from __future__ import annotations

import io
import logging
import math
import threading
import zipfile
from functools import partial
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from patchbay.helpers.builtin.ocr import OcrEngine
from patchbay.helpers.isolated import Isolated
from patchbay.helpers.sdk import Helper, InputTooLarge, UnreadableInput, UnsupportedMediaType
from patchbay.schemas.helpers import ToText

if TYPE_CHECKING:
    from markitdown import DocumentConverter

logger = logging.getLogger(__name__)

PDF = "application/pdf"
FORMATS = {  # media type → (extension, the markitdown converter for it)
    PDF: (".pdf", "PdfConverter"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        ".docx",
        "DocxConverter",
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (
        ".xlsx",
        "XlsxConverter",
    ),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        ".pptx",
        "PptxConverter",
    ),
    "text/html": (".html", "HtmlConverter"),
    "application/xhtml+xml": (".html", "HtmlConverter"),
    "text/markdown": (".md", "PlainTextConverter"),
    "text/x-markdown": (".md", "PlainTextConverter"),
    "text/csv": (".csv", "CsvConverter"),
    "text/plain": (".txt", "PlainTextConverter"),
}
ZIPPED = (".docx", ".xlsx", ".pptx")  # Office Open XML: a zip of XML parts


class DocumentOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    ocr: bool = True  # read scanned PDF pages
    max_ocr_pages: int = Field(default=50, ge=0)  # scanned pages read per document
    ocr_scale: float = Field(default=2.0, gt=0, le=8)  # render at 72 dpi x this for OCR
    threads: int = Field(default=2, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_pages: int = Field(default=2000, gt=0)  # a longer PDF is refused (413)
    max_unpacked_bytes: int = Field(default=100 * 1024 * 1024, gt=0)  # an Office file's zip
    timeout_s: float = Field(default=600, gt=0)  # a document read for longer is stopped (504)


class DocumentReader:
    """markitdown's converters plus OCR for scanned pages, loaded on first use. Blocking calls."""

    def __init__(self, options: DocumentOptions) -> None:
        self.options = options
        self.ocr = OcrEngine(threads=options.threads)
        self._converters: dict[str, DocumentConverter] = {}
        self._lock = threading.Lock()

    def _converter(self, name: str) -> DocumentConverter:
        with self._lock:
            if name not in self._converters:
                from markitdown import converters

                self._converters[name] = getattr(converters, name)()
            return self._converters[name]

    def convert(self, data: bytes, media_type: str) -> ToText:
        if media_type not in FORMATS:  # the capability checked; this guards direct callers
            raise UnsupportedMediaType(f"documents cannot read {media_type}")
        pages = scanned = None
        if FORMATS[media_type][0] in ZIPPED:
            self._check_unpacked_size(data, FORMATS[media_type][0][1:].upper())
        if media_type == PDF:
            pages, scanned = pdf_layout(data, max_pages=self.options.max_pages)
        markdown = self._markdown(data, media_type)
        if scanned:
            markdown = "\n\n".join(filter(None, [markdown, self._ocr_pages(data, scanned)]))
        return ToText(text=markdown, format="markdown", pages=pages)

    def _check_unpacked_size(self, data: bytes, kind: str) -> None:
        """Refuse a zip bomb before a parser unpacks it: a few hundred KB of zip can hold
        gigabytes of XML, and the parsers read each part whole (no more than its zip entry says,
        which is what is added up here)."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                size = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, ValueError, EOFError):
            return  # not a zip: the converter says what is wrong with it
        if size > self.options.max_unpacked_bytes:
            raise InputTooLarge(
                f"this {kind} file unpacks to {size:,} bytes, over the "
                f"{self.options.max_unpacked_bytes:,} this helper reads"
            )

    def _markdown(self, data: bytes, media_type: str) -> str:
        """The document as Markdown, by the one converter for its type: markitdown's own routing
        would fall back to reading a broken DOCX as plain text."""
        from markitdown import MissingDependencyException, StreamInfo

        extension, name = FORMATS[media_type]
        info = StreamInfo(mimetype=media_type, extension=extension)
        try:
            result = self._converter(name).convert(io.BytesIO(data), info)
        except MissingDependencyException:
            raise
        except Exception as exc:  # parsers of untrusted files fail in many ways
            kind = extension[1:].upper()
            raise UnreadableInput(
                f"cannot read this {kind} file: {type(exc).__name__}: {exc}"
            ) from exc
        return result.markdown.replace("\f", "\n\n").strip()  # pdfminer ends pages with \f

    def _ocr_pages(self, data: bytes, pages: list[int]) -> str:
        """Markdown sections with the OCR'd text of the (0-based) `pages` of a PDF."""
        import pypdfium2 as pdfium

        limit = self.options.max_ocr_pages if self.options.ocr else 0
        sections = []
        document = pdfium.PdfDocument(data)
        try:
            for index in pages[:limit]:
                page = document[index]
                bitmap = page.render(scale=self._scale(*page.get_size()))
                text = self.ocr.read(bitmap.to_pil()).strip()
                sections.append(f"<!-- page {index + 1}: scanned, read by OCR -->\n{text}")
        finally:
            document.close()
        if len(pages) > limit:
            skipped = ", ".join(str(i + 1) for i in pages[limit:])
            sections.append(f"<!-- pages {skipped}: scanned, not read (OCR limit) -->")
        return "\n\n".join(sections)

    def _scale(self, width: float, height: float) -> float:
        """`ocr_scale`, or less for a page (`width` x `height` points) that would render to
        more pixels than OCR reads: a tiny PDF may hold a page metres wide."""
        # the largest s with (width*s + 1) * (height*s + 1) <= max_pixels (+1: pixels round up)
        w, h, most = max(width, 1.0), max(height, 1.0), self.ocr.max_pixels
        fits = (math.sqrt((w + h) ** 2 + 4 * w * h * (most - 1)) - (w + h)) / (2 * w * h)
        return min(self.options.ocr_scale, fits)


def pdf_layout(data: bytes, *, max_pages: int | None = None) -> tuple[int, list[int]]:
    """How many pages a PDF has, and which (0-based) have no text layer; InputTooLarge over
    `max_pages` (a page costs a few bytes, and reading it milliseconds)."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise UnreadableInput(f"not a readable PDF: {exc}") from exc
    try:
        if max_pages is not None and len(document) > max_pages:
            raise InputTooLarge(
                f"the PDF has {len(document):,} pages, over the {max_pages:,} this helper reads"
            )
        scanned = []
        for index in range(len(document)):
            textpage = document[index].get_textpage()
            if not textpage.get_text_range().strip():
                scanned.append(index)
        return len(document), scanned
    finally:
        document.close()


class DocumentsHelper(Helper):
    name = "documents"
    description = "Turns documents (PDF, Office, HTML, Markdown, CSV) into Markdown, offline."
    version = "1"

    def __init__(self, options: DocumentOptions | None = None) -> None:
        self.options = options or DocumentOptions()
        super().__init__(max_body_bytes=self.options.max_body_bytes)
        # In a child process, one document at a time: a parser that never ends on a crafted
        # file is stopped at the capability's timeout instead of holding the helper for good.
        self.reader = Isolated(partial(DocumentReader, self.options), name="documents reader")
        timeout_s = self.options.timeout_s
        self.to_text(*FORMATS, name="document-to-text", timeout_s=timeout_s)(self.document_to_text)

    async def document_to_text(self, data: bytes, media_type: str) -> ToText:
        """A document as Markdown: headings, lists and tables kept; scanned PDF pages by OCR."""
        converted: ToText = await self.reader.run("convert", data, media_type)
        return converted

    async def startup(self) -> None:
        self.reader.start()

    async def shutdown(self) -> None:
        self.reader.close()


Options = DocumentOptions  # what `patchbay helper builtin` validates its options with


def create_helper(options: DocumentOptions | None = None) -> DocumentsHelper:
    return DocumentsHelper(options)
