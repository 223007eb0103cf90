"""Section headers CDLA labels as text: one short line, set apart from the page's body text by its font.

The PDF's text cells carry the font name (docling-parse), and their height gives the size. A text
cluster that is a single line of at most ``MAX_HEADING_CHARS`` characters, without sentence-final
punctuation, in bold where body text is not, or clearly larger than body text, is a heading.
"""

from __future__ import annotations

import re
from statistics import median
from typing import NamedTuple

from docling.datamodel.base_models import Cluster, Page
from docling_core.types.doc import BoundingBox, CoordOrigin, DocItemLabel

from ray_rag_dagster.stages.page_markdown import BULLET_START

MAX_HEADING_CHARS = 80
LARGER = 1.15  # line height over the body's that counts as a larger font
_BOLD = re.compile(r"bold|black|heavy|semibold|demi|medium", re.I)
_BOLD_ABBREVIATED = re.compile(r"Bd(?:It)?$|[-,]Bd")  # MyriadBd, Myriad-BdIt
_SENTENCE_END = re.compile(r"[.,;:!?。\-]$")  # a hyphen: the line breaks a word
_SECTION_NUMBER = re.compile(r"^(?:\d{1,2}|[IVX]{1,4})\.?$")


def _is_bold(font_name: str) -> bool:
    name = font_name.split("+")[-1]
    return bool(_BOLD.search(name) or _BOLD_ABBREVIATED.search(name))


class _Cell(NamedTuple):
    box: BoundingBox  # top-left origin
    text: str
    font: str
    bold: bool


def _cells_in(cells: list[_Cell], bbox: BoundingBox) -> list[_Cell]:
    return [
        c for c in cells
        if bbox.l <= (c.box.l + c.box.r) / 2 <= bbox.r and bbox.t <= (c.box.t + c.box.b) / 2 <= bbox.b
    ]


def _title_like(text: str) -> bool:
    return (
        len(text) <= MAX_HEADING_CHARS and not _SENTENCE_END.search(text)
        and bool(re.search(r"\w", text)) and not text.isdigit() and not BULLET_START.match(text)
    )


def _box_of(cells: list[_Cell]) -> BoundingBox:
    return BoundingBox(
        l=min(c.box.l for c in cells), t=min(c.box.t for c in cells),
        r=max(c.box.r for c in cells), b=max(c.box.b for c in cells), coord_origin=CoordOrigin.TOPLEFT,
    )


def _leading_heading(inside: list[_Cell]) -> tuple[BoundingBox, BoundingBox] | None:
    """(heading, rest) boxes when a text block's first line is a heading run into its paragraph.

    The first line must be title-like and set wholly in a font the rest of the block never uses.
    """
    ordered = sorted(inside, key=lambda c: c.box.t)
    first_bottom = ordered[0].box.b
    first = [c for c in ordered if (c.box.t + c.box.b) / 2 < first_bottom]
    rest = [c for c in ordered if c not in first]
    fonts = {c.font for c in first}
    if not rest or len(fonts) != 1 or not next(iter(fonts)) or fonts & {c.font for c in rest}:
        return None
    if not all(c.bold for c in first) or any(c.bold for c in rest):
        return None  # a heavier face than its paragraph, not merely another one
    if not _title_like(" ".join(c.text for c in sorted(first, key=lambda c: c.box.l))):
        return None
    return _box_of(first), _box_of(rest)


def relabel_headings(page: Page) -> None:
    """Section headers from text clusters: a single title-like line in a bold or larger font than the
    body, or such a first line set in its own font ahead of its paragraph (split off)."""
    layout = page.predictions.layout
    if layout is None or page.size is None or not page.cells:
        return
    cells = []
    for cell in page.cells:
        text = cell.text.strip()
        if text:
            font = getattr(cell, "font_name", "") or ""
            box = cell.rect.to_bounding_box().to_top_left_origin(page.size.height)
            cells.append(_Cell(box, text, font, _is_bold(font)))
    chars = sum(len(c.text) for c in cells)
    if not chars:
        return
    body_bold = sum(len(c.text) for c in cells if c.bold) > chars / 2
    body_height = median(c.box.b - c.box.t for c in cells)
    next_id = max((c.id for c in layout.clusters), default=0) + 1
    added: list[Cluster] = []
    for cluster in layout.clusters:
        if cluster.label != DocItemLabel.TEXT:
            continue
        inside = _cells_in(cells, cluster.bbox)
        if not inside:
            continue
        top = min(c.box.t for c in inside)
        bottom = max(c.box.b for c in inside)
        single_line = all(c.box.t < (top + bottom) / 2 < c.box.b for c in inside)
        if not single_line:
            split = _leading_heading(inside)
            if split is not None:
                heading_box, cluster.bbox = split
                added.append(cluster.model_copy(update={"id": next_id, "label": DocItemLabel.SECTION_HEADER,
                                                        "bbox": heading_box}))
                next_id += 1
            continue
        if not _title_like(" ".join(c.text for c in sorted(inside, key=lambda c: c.box.l))):
            continue
        bold = all(c.bold for c in inside) and not body_bold
        larger = bottom - top > LARGER * body_height
        if bold or larger:
            cluster.label = DocItemLabel.SECTION_HEADER
    layout.clusters += added
    _attach_section_numbers(page, cells)


def _attach_section_numbers(page: Page, cells: list[_Cell]) -> None:
    """Grow each section header over a lone number beside it on its line (a boxed "1" before "Introduction").

    CDLA leaves such numbers out of the header box, or boxes them as text of their own.
    """
    layout = page.predictions.layout
    assert layout is not None
    headers = [c for c in layout.clusters if c.label == DocItemLabel.SECTION_HEADER]
    absorbed: set[int] = set()
    for header in headers:
        if header.id in absorbed:
            continue
        hb = header.bbox
        height = hb.b - hb.t
        for box, text, _font, _bold in cells:
            if not _SECTION_NUMBER.match(text):
                continue
            cy = (box.t + box.b) / 2
            gap = max(box.l - hb.r, hb.l - box.r)
            if not (hb.t <= cy <= hb.b) or not 0 <= gap <= 3 * height:
                continue
            header.bbox = BoundingBox(
                l=min(hb.l, box.l), t=min(hb.t, box.t), r=max(hb.r, box.r), b=max(hb.b, box.b),
                coord_origin=CoordOrigin.TOPLEFT,
            )
            hb = header.bbox
            absorbed |= {  # the number's own cluster, and duplicates of the header, now inside it
                c.id for c in layout.clusters
                if c is not header and c.label in (DocItemLabel.TEXT, DocItemLabel.SECTION_HEADER)
                and hb.l <= (c.bbox.l + c.bbox.r) / 2 <= hb.r and hb.t <= (c.bbox.t + c.bbox.b) / 2 <= hb.b
            }
    if absorbed:
        layout.clusters = [c for c in layout.clusters if c.id not in absorbed]
