import json
import pathlib
from collections import Counter

import phonenumbers
import pypdfium2 as pdfium
import pytest

from ray_rag_dagster.backends.enrich import redact_pii
from ray_rag_dagster.backends.enrich.pii import _redact_cells
from ray_rag_dagster.samples import (
    HEADING_EMAIL,
    HEADING_PHONE,
    KNOWN_SENTENCE,
    PHONE,
    PHONE_INTL,
    PROTOCOL_FILENAME,
    SCANNED_FILENAME,
    SEEDED_PII,
    SEEDED_SPLIT_PII,
    SPLIT_EMAIL_CELLS,
    SPLIT_PHONE_CELLS,
    seeded_pii_leaks,
    write_samples,
)


def _pages_text(path: pathlib.Path) -> list[str]:
    pdf = pdfium.PdfDocument(path)
    try:
        return [page.get_textpage().get_text_range() for page in pdf]
    finally:
        pdf.close()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    return write_samples(tmp_path_factory.mktemp("samples") / "nested")


def test_writes_both_files(samples: list[pathlib.Path]) -> None:
    assert [p.name for p in samples] == [PROTOCOL_FILENAME, SCANNED_FILENAME]
    assert all(p.read_bytes().startswith(b"%PDF-") for p in samples)


def test_bytes_are_deterministic(samples: list[pathlib.Path], tmp_path: pathlib.Path) -> None:
    again = write_samples(tmp_path)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in samples]


def test_protocol_text_layer(samples: list[pathlib.Path]) -> None:
    pages = _pages_text(samples[0])
    assert 3 <= len(pages) <= 4
    text = "\n".join(pages)
    assert KNOWN_SENTENCE in " ".join(text.split())
    for secret in SEEDED_PII:
        assert secret in text
    for heading in ("Synopsis", "Objectives and Endpoints", "Inclusion Criteria", "Schedule of Activities"):
        assert heading in text
    assert "Dr. Jane Doe" in text
    assert f"7. SAE Desk {HEADING_EMAIL} {HEADING_PHONE}" in text  # a heading holding PII


def test_split_pii_is_split_in_the_pdf(samples: list[pathlib.Path]) -> None:
    """Each split value is in the PDF piece by piece: over lines, paragraphs, or two cells of a table row
    (the text layer runs a row's cells together on one line; extraction makes them Markdown cells)."""
    text = "\n".join(_pages_text(samples[0]))
    lines = text.splitlines()
    for value, pieces in SEEDED_SPLIT_PII.items():
        assert all(piece in text for piece in pieces), value
        if pieces not in (SPLIT_PHONE_CELLS, SPLIT_EMAIL_CELLS):
            assert not any(value in line for line in lines), value
    assert "+1\r\n617 555 0199" in text and "219-09-\r\n9999" in text
    assert "+1 617 555 0142" in text and "pv.reports@ examplar-tx.example" in text


def test_seeded_pii_leaks_finds_every_seeded_value_however_split(samples: list[pathlib.Path]) -> None:
    text = "\n".join(_pages_text(samples[0]))
    expected = [*SEEDED_PII, *SEEDED_SPLIT_PII]
    assert seeded_pii_leaks(text) == expected
    assert seeded_pii_leaks(json.dumps({"text": text})) == expected  # JSON-escaped line breaks too
    assert seeded_pii_leaks("| +1 617 | 555 0142 |") == ["+1 617 555 0142"]
    assert seeded_pii_leaks("call 555 0142") == ["+1 617 555 0142"]  # a piece is a leak
    assert seeded_pii_leaks("+1 and 9999 are too common to count alone") == []


def test_redaction_removes_every_seeded_value_and_the_old_way_did_not(samples: list[pathlib.Path]) -> None:
    pages = _pages_text(samples[0])
    redacted = "\n".join(redact_pii(page)[0] for page in pages)
    assert seeded_pii_leaks(redacted) == []
    cell_by_cell = "\n".join(_redact_cells(page, Counter()) for page in pages)
    # In the text layer the cells of a row are one line, where "+1 617 555 0142" was always found.
    assert set(seeded_pii_leaks(cell_by_cell)) == set(SEEDED_SPLIT_PII) - {"+1 617 555 0142"}


def test_scanned_form_has_no_text_layer(samples: list[pathlib.Path]) -> None:
    pages = _pages_text(samples[1])
    assert len(pages) == 1
    assert pages[0].strip() == ""
    pdf = pdfium.PdfDocument(samples[1])
    try:
        width, height = pdf[0].get_size()
        image = pdf[0].render(scale=1).to_pil().convert("L")
    finally:
        pdf.close()
    assert (width, height) == (612, 792)
    assert image.getextrema() == (0, 255)  # black text on white


def test_seeded_phones_are_valid_numbers() -> None:
    """Redaction must be exercised on numbers phonenumbers itself accepts, not only on our fallbacks."""
    for number in (PHONE, PHONE_INTL):
        assert phonenumbers.is_valid_number(phonenumbers.parse(number, "US"))
