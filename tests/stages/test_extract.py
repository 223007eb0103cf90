"""extract_pdf on real PDFs from ../shared/data and on small PDFs made here.

Each document is converted once per module (fixtures); the 97-page protocol only over a page
range. The converter itself is built once per process, as on a Ray worker.
"""

from __future__ import annotations

import difflib
import io
import re
from pathlib import Path

import pytest

from ray_rag_dagster.errors import DocumentError
from ray_rag_dagster.stages import docling_convert
from ray_rag_dagster.stages.docling_convert import ExtractOptions, ExtractResult, extract_pdf
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
NORMAL_4PAGES = DATA / "pdfs" / "docling" / "normal_4pages.pdf"
NORMAL_4PAGES_GT = DATA / "groundtruth" / "docling" / "normal_4pages.md"
CDISC = DATA / "pdfs" / "clinical" / "CDISC_Pilot_Study.pdf"

needs_data = pytest.mark.skipif(
    not (NORMAL_4PAGES.is_file() and CDISC.is_file()),
    reason=f"shared test corpus not found at {DATA}",
)

TABLE_SEPARATOR = re.compile(r"^\|(?:\s*:?-{1,}:?\s*\|)+\s*$", re.MULTILINE)


def _words(markdown: str) -> list[str]:
    text = re.sub(r"<!--.*?-->", " ", markdown)
    text = TABLE_SEPARATOR.sub(" ", text)
    return re.sub(r"[#*|]", " ", text).split()


# ------------------------------------------------------------------------------- real documents


@pytest.fixture(scope="module")
def normal4() -> ExtractResult:
    return extract_pdf(NORMAL_4PAGES.read_bytes(), NORMAL_4PAGES.name)


@pytest.fixture(scope="module")
def cdisc() -> ExtractResult:
    return extract_pdf(CDISC.read_bytes(), CDISC.name, page_range=(12, 14))


@needs_data
def test_every_groundtruth_table_is_a_markdown_table(normal4: ExtractResult) -> None:
    expected = len(TABLE_SEPARATOR.findall(NORMAL_4PAGES_GT.read_text()))
    assert expected >= 1
    assert sum(p.tables for p in normal4.pages) == expected
    markdown = "\n".join(p.markdown for p in normal4.pages)
    assert len(TABLE_SEPARATOR.findall(markdown)) == expected
    table_page = next(p for p in normal4.pages if p.tables)
    assert table_page.page_no == 2
    assert "| 구분 | 개정전 | 개정후 |\n| - | - | - |" in table_page.markdown
    assert "| 분류 | 1군 감염병 | 1급 감염병 |" in table_page.markdown


@needs_data
def test_pages_are_numbered_and_complete(normal4: ExtractResult) -> None:
    assert normal4.page_count == 4
    assert [p.page_no for p in normal4.pages] == [1, 2, 3, 4]
    assert normal4.engine == "offline"
    assert normal4.seconds > 0
    assert not any(p.ocr for p in normal4.pages)  # a text PDF is never OCR'd


@needs_data
def test_text_matches_groundtruth(normal4: ExtractResult) -> None:
    ours = _words("\n\n".join(p.markdown for p in normal4.pages))
    truth = _words(NORMAL_4PAGES_GT.read_text())
    ratio = difflib.SequenceMatcher(None, truth, ours, autojunk=False).ratio()
    assert ratio > 0.85, ratio  # measured 0.97


@needs_data
def test_docling_document_is_kept_whole(normal4: ExtractResult) -> None:
    from docling_core.types.doc import DoclingDocument, SectionHeaderItem

    doc = DoclingDocument.model_validate(normal4.document)
    assert sorted(doc.pages) == [1, 2, 3, 4]
    assert len(doc.tables) == sum(p.tables for p in normal4.pages)
    heading = "코로나-19 관련 보험약관상 재해보험금 지급문제 및 개선과제"
    assert any(isinstance(item, SectionHeaderItem) and item.text == heading for item in doc.texts)
    assert f"## {heading}" in normal4.pages[0].markdown.split("\n\n")
    assert all(p.elements >= p.tables + p.pictures for p in normal4.pages)


@needs_data
def test_clinical_provenance_pages_and_headings(cdisc: ExtractResult, onnx_embedder) -> None:  # type: ignore[no-untyped-def]
    from docling_core.types.doc import DoclingDocument

    from ray_rag_dagster.stages.chunk import EmbedderTokenizer, build_chunks

    assert cdisc.page_count == 97
    assert [p.page_no for p in cdisc.pages] == [12, 13, 14]
    page13 = cdisc.pages[1].markdown
    assert "## 3.4.2.2. Exclusion Criteria" in page13
    assert "Patients will be excluded from the study for any of the following reasons" in page13
    chunks = build_chunks(DoclingDocument.model_validate(cdisc.document), EmbedderTokenizer.of(onnx_embedder))
    assert all(12 <= chunk.page_start <= chunk.page_end <= 14 for chunk in chunks)
    excluded = next(chunk for chunk in chunks if "Patients will be excluded from the study" in chunk.text)
    assert excluded.heading_path[-1] == "3.4.2.2. Exclusion Criteria"
    assert excluded.page_start == 13
    # the exclusion criteria run over the page break: the chunk holding page 14's part ends on page 14
    wolff = next(chunk for chunk in chunks if "Wolff-Parkinson-White syndrome" in chunk.text)
    assert wolff.page_end == 14 and wolff.heading_path == excluded.heading_path


@needs_data
def test_converter_is_built_once(normal4: ExtractResult) -> None:
    first = docling_convert._converter(ExtractOptions())
    assert docling_convert._converter(ExtractOptions()) is first


# ------------------------------------------------------------------------------------ bad input


def _reportlab_pdf(**canvas_kwargs: object) -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, **canvas_kwargs)
    pdf.drawString(72, 720, "Confidential protocol")
    pdf.showPage()
    pdf.save()
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", r"^empty file \(0 bytes\)$", id="zero-bytes"),
        pytest.param(b"PK\x03\x04 a zip, not a pdf", r"^not a PDF \(starts with b'PK", id="not-pdf"),
        pytest.param(_reportlab_pdf()[:400], r"^corrupt PDF: ", id="truncated"),
        pytest.param(b"%PDF-1.7\n" + bytes(range(256)) * 8, r"^corrupt PDF: ", id="garbage"),
        pytest.param(_reportlab_pdf(encrypt="secret"), r"^password-protected PDF$", id="password"),
    ],
)
def test_bad_input_raises_document_error(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        extract_pdf(data, "upload/bad.pdf")
    assert caught.value.document == "upload/bad.pdf"
    assert re.search(reason, caught.value.reason), caught.value.reason
    assert str(caught.value).startswith("upload/bad.pdf: ")
    assert "\n" not in str(caught.value)


@needs_data
def test_truncated_real_pdf_raises_document_error() -> None:
    data = NORMAL_4PAGES.read_bytes()
    with pytest.raises(DocumentError, match="corrupt PDF"):
        extract_pdf(data[: len(data) // 2], "half.pdf")


# --------------------------------------------------------------------------- scanned and blank


SCANNED_LINES = [
    "Scanned protocol page",
    "Inclusion criteria: adults aged 18 to 65 years.",
    "Exclusion criteria: pregnancy or lactation.",
]


@pytest.fixture(scope="module")
def mixed() -> ExtractResult:
    """3 pages: a text page, a blank page, an image-only (scanned) page."""
    from PIL import Image, ImageDraw, ImageFont
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    image = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=32)
    for i, line in enumerate(SCANNED_LINES):
        draw.text((100, 150 + 60 * i), line, fill="black", font=font)

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=(595, 842))
    pdf.setFont("Helvetica", 12)
    pdf.drawString(72, 760, "This page has a real text layer and needs no OCR at all.")
    pdf.showPage()
    pdf.showPage()  # blank
    pdf.drawImage(ImageReader(image), 0, 0, width=595, height=842)
    pdf.showPage()
    pdf.save()
    return extract_pdf(buf.getvalue(), "mixed.pdf")


def test_scanned_page_is_ocred(mixed: ExtractResult) -> None:
    assert [p.page_no for p in mixed.pages] == [1, 2, 3]
    scanned = mixed.pages[2]
    assert scanned.ocr
    text = scanned.markdown.lower()
    for word in ("scanned", "inclusion", "criteria", "adults", "pregnancy", "lactation"):
        assert word in text, scanned.markdown


def test_text_page_is_not_ocred(mixed: ExtractResult) -> None:
    page = mixed.pages[0]
    assert not page.ocr
    assert page.markdown == "This page has a real text layer and needs no OCR at all."
    assert page.elements == 1


def test_blank_page_is_listed_empty(mixed: ExtractResult) -> None:
    blank = mixed.pages[1]
    assert blank.markdown == ""
    assert blank.elements == blank.tables == blank.pictures == 0


def test_scanned_page_without_ocr_is_empty() -> None:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (800, 400), "white")
    ImageDraw.Draw(image).text((50, 50), "Only pixels here", fill="black", font=ImageFont.load_default(size=32))
    buf = io.BytesIO()
    image.save(buf, format="PDF")
    result = extract_pdf(buf.getvalue(), "scan.pdf", ExtractOptions(ocr=False))
    assert [(p.page_no, p.markdown, p.ocr) for p in result.pages] == [(1, "", False)]


def test_page_shards_cover_every_page_once() -> None:
    from ray_rag_dagster.stages.extract import page_shards

    assert page_shards(10, 0) == [(1, 10)]
    assert page_shards(10, 25) == [(1, 10)]
    assert len(page_shards(97, 25)) == 4
    for count in range(1, 120):
        shards = page_shards(count, 25)
        assert [page for first, last in shards for page in range(first, last + 1)] == list(range(1, count + 1))
        assert all(last - first + 1 <= 25 for first, last in shards)


def test_sharded_extraction_merges_to_the_same_pages(tmp_path: Path) -> None:
    from docling_core.types.doc import DoclingDocument

    from ray_rag_dagster.backends.object_store import LocalObjectStore
    from ray_rag_dagster.ids import version_of
    from ray_rag_dagster.settings import Settings
    from ray_rag_dagster.stages import keys
    from ray_rag_dagster.stages.extract import merge_extract, plan_extract, run_extract
    from ray_rag_dagster.stages.manifest import DocumentRef

    settings = Settings(home=tmp_path, extract_pages_per_shard=2)
    store = LocalObjectStore(settings.objects_dir)
    store.put_bytes("input/multi_page.pdf", (DATA / "pdfs" / "docling" / "multi_page.pdf").read_bytes())
    version = version_of(store.list("input/multi_page.pdf")[0].etag)
    document = DocumentRef(document_id="multi-page-00000001", version=version, source_key="input/multi_page.pdf")
    ranges = plan_extract(settings, document)
    assert ranges == [(1, 2), (3, 3), (4, 5)]
    sharded = merge_extract(settings, document, [run_extract(settings, document, r) for r in ranges])
    assert sharded.key == keys.extracted_pages(document) == f"extracted/multi-page-00000001/{version}/pages.json"
    sharded_pages = store.get_json(sharded.key)["pages"]
    # one DoclingDocument, pages numbered as in the PDF, the same items as the whole document's
    sharded_doc = DoclingDocument.model_validate(store.get_json(keys.extracted_document(document)))
    assert sorted(sharded_doc.pages) == [1, 2, 3, 4, 5]
    whole = merge_extract(settings, document, [run_extract(settings, document)])
    assert store.get_json(whole.key)["pages"] == sharded_pages
    whole_doc = DoclingDocument.model_validate(store.get_json(keys.extracted_document(document)))
    assert [(t.text, t.prov[0].page_no) for t in sharded_doc.texts] == [(t.text, t.prov[0].page_no) for t in whole_doc.texts]
    assert sharded.counts["shards"] == 3 and sharded.counts["pages"] == 5
    assert store.list(keys.extract_parts_prefix(document)) == []  # parts removed after the merge


def test_a_replaced_or_deleted_pdf_is_gone_not_failed(tmp_path: Path) -> None:
    """Extract refuses a version the inbox no longer holds: the document is gone, not bad input."""
    from ray_rag_dagster.backends.object_store import LocalObjectStore
    from ray_rag_dagster.errors import DocumentGone
    from ray_rag_dagster.ids import version_of
    from ray_rag_dagster.settings import Settings
    from ray_rag_dagster.stages.extract import plan_extract, run_extract
    from ray_rag_dagster.stages.manifest import DocumentRef

    settings = Settings(home=tmp_path)
    store = LocalObjectStore(settings.objects_dir)
    key = "input/multi_page.pdf"
    store.put_bytes(key, (DATA / "pdfs" / "docling" / "multi_page.pdf").read_bytes())
    document = DocumentRef(document_id="multi-page-00000002", version=version_of(store.list(key)[0].etag), source_key=key)
    store.put_bytes(key, _reportlab_pdf())  # a new version replaces it
    with pytest.raises(DocumentGone, match="replaced while being processed"):
        plan_extract(settings, document)
    store.delete_prefix(key)
    with pytest.raises(DocumentGone, match="deleted from the inbox"):
        run_extract(settings, document)
