import pathlib

import phonenumbers
import pypdfium2 as pdfium
import pytest

from ray_rag_dagster.samples import (
    KNOWN_SENTENCE,
    PHONE,
    PHONE_INTL,
    PROTOCOL_FILENAME,
    SCANNED_FILENAME,
    SEEDED_PII,
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
