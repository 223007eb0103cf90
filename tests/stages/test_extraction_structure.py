"""Tables and text recovered from what the layout model got wrong: text figures, drifting rows.

Real PDFs from ../shared/data (docling's test set) plus unit checks of the rules on made-up input.
"""

from __future__ import annotations

import pytest
from docling_core.types.doc import BoundingBox, CoordOrigin, TableCell
from PIL import Image, ImageDraw

from ray_rag_dagster.stages.docling_convert import ExtractResult, extract_pdf
from ray_rag_dagster.stages.docling_engines.table_rows import merge_unruled_rows, rule_finder
from ray_rag_dagster.stages.docling_engines.text_figures import _grid_span, _Line, _lines
from tests.conftest import SHARED_DATA

DOCLING_PDFS = SHARED_DATA / "pdfs" / "docling"
MISLABELED = DOCLING_PDFS / "table_mislabeled_as_picture.pdf"
ARXIV_PAGE = DOCLING_PDFS / "2305.03393v1-pg9.pdf"

needs_data = pytest.mark.skipif(
    not (MISLABELED.is_file() and ARXIV_PAGE.is_file()), reason=f"shared test corpus not found at {SHARED_DATA}"
)


def _markdown(result: ExtractResult) -> str:
    return "\n".join(page.markdown for page in result.pages)


@needs_data
def test_table_inside_a_text_figure_comes_out_as_a_table() -> None:
    # CDLA boxes each half of this tinted two-page spread as one figure
    result = extract_pdf(MISLABELED.read_bytes(), MISLABELED.name)
    assert sum(page.tables for page in result.pages) == 1
    markdown = _markdown(result)
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| - |")]
    assert "| y y | Persons with disabilities | * | * |" in rows
    assert "| y y | Internally displaced persons | * | * |" in rows
    assert len(rows) == 8  # header + the seven groups
    # the text around it is split into paragraphs, not one blob
    assert any(line.startswith("28. Are specialized legal aid services") for line in markdown.splitlines())


@needs_data
def test_lines_of_a_ruled_row_are_one_row_and_values_stay_in_their_rows() -> None:
    result = extract_pdf(ARXIV_PAGE.read_bytes(), ARXIV_PAGE.name)
    markdown = _markdown(result)
    assert "| 6 | 6 | OTSL HTML | 0.965 0.969 | 0.934 0.927 | 0.955 0.955 | 0.88 0.857 | 2.73 5.39 |" in markdown
    assert "| 4 | 2 | OTSL HTML | 0.952 0.944 | 0.92 0.903 | 0.942 0.931 | 0.857 0.824 | 1.22 2 |" in markdown


def _box(l: float, t: float, r: float, b: float) -> BoundingBox:
    return BoundingBox(l=l, t=t, r=r, b=b, coord_origin=CoordOrigin.TOPLEFT)


def test_aligned_three_column_lines_are_a_grid_with_their_header_but_prose_is_not() -> None:
    prose = [_box(10, 10 + 12 * i, 300, 18 + 12 * i) for i in range(3)]
    header = [_box(200, 60, 240, 68), _box(260, 60, 290, 68)]
    rows = [box for i in range(4) for box in (
        _box(10, 75 + 12 * i, 120, 83 + 12 * i), _box(205, 75 + 12 * i, 215, 83 + 12 * i),
        _box(265, 75 + 12 * i, 275, 83 + 12 * i),
    )]
    lines = _lines(prose + header + rows)
    assert [len(line.segments) for line in lines] == [1, 1, 1, 2, 3, 3, 3, 3]
    assert _grid_span(lines) == (3, 8)
    assert _grid_span(lines[:5]) is None  # one aligned row is no table
    assert _grid_span([_Line([b]) for b in prose]) is None


def _cell(r0: int, r1: int, c: int, text: str, t: float, b: float) -> TableCell:
    return TableCell(
        bbox=_box(10 + 50 * c, t, 50 + 50 * c, b), row_span=r1 - r0, col_span=1, start_row_offset_idx=r0,
        end_row_offset_idx=r1, start_col_offset_idx=c, end_col_offset_idx=c + 1, text=text,
    )


def _two_line_group() -> list[TableCell]:
    return [
        _cell(0, 1, 0, "k", 0, 10), _cell(0, 1, 1, "v", 0, 10),
        _cell(1, 3, 0, "6", 20, 40), _cell(1, 2, 1, "a", 20, 28), _cell(2, 3, 1, "b", 32, 40),
    ]


def test_unruled_lines_under_a_spanning_first_cell_merge_into_one_row() -> None:
    merged = merge_unruled_rows(_two_line_group(), header_rows=1, ruled=lambda y0, y1: False)
    body = sorted((c.start_row_offset_idx, c.start_col_offset_idx, c.text) for c in merged)
    assert body == [(0, 0, "k"), (0, 1, "v"), (1, 0, "6"), (1, 1, "a b")]


def test_a_rule_between_the_lines_keeps_them_separate_rows() -> None:
    image = Image.new("L", (100, 50), 255)
    ImageDraw.Draw(image).line([(0, 30), (99, 30)], fill=0)  # between y=28 and y=32 at scale 1
    ruled = rule_finder(image, _box(0, 0, 100, 50), scale=1.0)
    assert ruled(28, 32) and not ruled(10, 20)
    cells = _two_line_group()
    assert merge_unruled_rows(cells, header_rows=1, ruled=ruled) == cells


MULTI_PAGE = DOCLING_PDFS / "multi_page.pdf"
NORMAL_4PAGES = DOCLING_PDFS / "normal_4pages.pdf"


@pytest.mark.skipif(not (MULTI_PAGE.is_file() and NORMAL_4PAGES.is_file()), reason="shared test corpus missing")
def test_headings_from_fonts_numbers_and_run_in_first_lines() -> None:
    multi = _markdown(extract_pdf(MULTI_PAGE.read_bytes(), MULTI_PAGE.name)).splitlines()
    assert "## Pre-Digital Era (19th - Early 20th Century)" in multi  # bold line CDLA calls text
    assert "## The Evolution of the Word Processor" in multi  # lone title CDLA calls a page header
    korean = _markdown(extract_pdf(NORMAL_4PAGES.read_bytes(), NORMAL_4PAGES.name)).splitlines()
    assert "## 들어가며 1" in korean  # the boxed section number beside it joins the heading
    assert "## 1" not in korean
    # a heading line in its own heavier font, split off the paragraph it was boxed with
    assert "## (1) 「감염병의 예방 및 관리에 관한 법률」 개정" in korean
    assert any(line.startswith("2020.1.1. 시행된") for line in korean)
    # body paragraphs stay text
    assert not any(line.startswith("## 2020.3.30.") for line in korean)


CDISC = SHARED_DATA / "pdfs" / "clinical" / "CDISC_Pilot_Study.pdf"


@pytest.mark.skipif(not CDISC.is_file(), reason=f"shared test corpus not found at {SHARED_DATA}")
def test_a_bulleted_line_is_never_a_heading() -> None:
    # The synopsis' criteria on page 24 are "·" bullets; the layout model boxes some as titles, and a heading
    # would cut the criterion off the rest of its sentence ("within past 1 year") and head unrelated text.
    markdown = _markdown(extract_pdf(CDISC.read_bytes(), CDISC.name, page_range=(24, 24)))
    lines = markdown.splitlines()
    assert not [line for line in lines if line.startswith("#") and "CNS imaging" in line], markdown
    assert any(line.startswith("- CNS imaging (CT scan or MRI of brain) compatible with AD") for line in lines), markdown
