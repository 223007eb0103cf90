"""Real clinical text for false-positive tests: the three protocols' text layer, read from ../shared/data.

The PDFs are read in place (never copied into the repository); tests that use them skip when the folder
is absent.
"""

from __future__ import annotations

import functools
import re

import pytest

from tests.conftest import PDFS

CLINICAL = PDFS / "clinical"

# Shapes that a PII rule could mistake for a phone number, SSN or e-mail address.
RISKY_SHAPES = {
    "dose per weight": re.compile(r"\d+(?:\.\d+)?\s*(?:mg|µg|mcg|g|mL|IU|U)/kg"),
    "date": re.compile(
        r"\b\d{1,2}[ -](?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*[ -]\d{2,4}\b"
        r"|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"
    ),
    "lab or value range": re.compile(
        r"\d+(?:\.\d+)?\s*(?:-|–|to)\s*\d+(?:\.\d+)?\s*(?:mmol|mg|g/|x|×|%|U/L|µmol|mL|kg)"
    ),
    "registry or protocol number": re.compile(
        r"\bNCT\d{8}\b|\b[A-Z]\d[A-Z]-[A-Z]{2}-[A-Z]{4}\b|\bBP\d{5}\b|\bEudraCT\b"
    ),
    "page number": re.compile(r"\bPage \d+(?: of \d+)?\b"),
    "long digit run": re.compile(r"\d[\d ,.\-–/()]{8,}\d"),
}


def require_protocols() -> None:
    if not CLINICAL.is_dir() or not list(CLINICAL.glob("*.pdf")):
        pytest.skip(f"the real protocols are not at {CLINICAL}")


@functools.cache
def protocol_pages() -> dict[str, tuple[str, ...]]:
    """Each protocol's pages as pypdfium2 reads their text layer (lines end in CR LF)."""
    import pypdfium2 as pdfium

    pages = {}
    for path in sorted(CLINICAL.glob("*.pdf")):
        pdf = pdfium.PdfDocument(path)
        try:
            pages[path.name] = tuple(page.get_textpage().get_text_range() for page in pdf)
        finally:
            pdf.close()
    return pages


@functools.cache
def risky_lines() -> dict[str, tuple[str, ...]]:
    """Lines of the protocols (with the line after, as extraction may join them) showing each risky shape."""
    found: dict[str, list[str]] = {shape: [] for shape in RISKY_SHAPES}
    for pages in protocol_pages().values():
        for page in pages:
            lines = [line.strip() for line in page.splitlines() if line.strip()]
            for index, line in enumerate(lines):
                for shape, pattern in RISKY_SHAPES.items():
                    if pattern.search(line):
                        found[shape].append("\n".join(lines[index : index + 2]))
    return {shape: tuple(dict.fromkeys(lines)) for shape, lines in found.items()}


def as_table(page: str) -> str:
    """A page laid out as a one-column Markdown table: every line a cell, so every line break is a cell break."""
    return "| " + " |\n| ".join(line.strip() for line in page.splitlines()) + " |"


def as_cells(page: str) -> str:
    """A page with every word in a cell of its own (the harshest flattening a table can cause)."""
    return "\n".join("| " + " | ".join(line.split()) + " |" for line in page.splitlines())
