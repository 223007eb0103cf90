"""Cheap up-front checks of a PDF with pypdfium2, before docling: bad input and the size caps fail here.

pdfium tells a password error apart from a format error, which docling's status doesn't.
"""

from __future__ import annotations

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ray_rag_dagster.errors import DocumentError, one_line
from ray_rag_dagster.settings import Settings


def text_layer_pages(data: bytes, name: str) -> list[bool]:
    """Per page, whether it has a text layer; raises ``DocumentError`` for what is not a readable PDF."""
    if not data:
        raise DocumentError(name, "empty file (0 bytes)")
    if b"%PDF-" not in data[:1024]:
        raise DocumentError(name, f"not a PDF (starts with {data[:16]!r})")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError(name, "password-protected PDF") from None
        raise DocumentError(name, f"corrupt PDF: {one_line(exc)}") from None
    try:
        if len(pdf) == 0:
            raise DocumentError(name, "corrupt PDF: no pages")
        has_text: list[bool] = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            has_text.append(bool(textpage.get_text_range().strip()))
            textpage.close()
            page.close()
        return has_text
    except pdfium.PdfiumError as exc:
        raise DocumentError(name, f"corrupt PDF: {one_line(exc)}") from None
    finally:
        pdf.close()


def checked_page_count(settings: Settings, data: bytes, name: str) -> int:
    """The PDF's page count, once it is a readable PDF within the size and page limits (else ``DocumentError``)."""
    if len(data) > settings.max_document_mb * 1024 * 1024:
        raise DocumentError(name, f"{len(data) / 1024**2:.1f} MB is over the {settings.max_document_mb} MB limit")
    page_count = len(text_layer_pages(data, name))
    if page_count > settings.max_pages:
        raise DocumentError(name, f"{page_count} pages is over the {settings.max_pages}-page limit")
    return page_count
