"""CDLA "figures" that are really text: split into paragraphs, with any grid of words as a table.

CDLA boxes some text regions as figures: plain text blocks, and whole pages on a tinted
background (one figure per half of a two-page spread). A picture would drop their words, so a
figure holding a paragraph's worth of text is re-segmented from its own text lines: rows of
words aligned in three or more columns become a table (run through the table model like any
other), the rest becomes one text cluster per paragraph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from docling.datamodel.base_models import Cluster, Page
from docling_core.types.doc import BoundingBox, CoordOrigin, DocItemLabel

MIN_GRID_ROWS = 3  # rows of aligned words before a block counts as a table
MIN_GRID_COLUMNS = 3


@dataclass
class _Line:
    """Text cells sharing a baseline band, left to right; ``segments`` are their merged x-spans."""

    boxes: list[BoundingBox] = field(default_factory=list)

    @property
    def top(self) -> float:
        return min(b.t for b in self.boxes)

    @property
    def bottom(self) -> float:
        return max(b.b for b in self.boxes)

    @property
    def segments(self) -> list[tuple[float, float]]:
        spans: list[list[float]] = []
        for box in sorted(self.boxes, key=lambda b: b.l):
            if spans and box.l <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], box.r)
            else:
                spans.append([box.l, box.r])
        return [(a, b) for a, b in spans]


def _cell_boxes_in(page: Page, bbox: BoundingBox) -> list[tuple[BoundingBox, int]]:
    """(top-left box, characters) of the page's non-blank text cells centred inside ``bbox``."""
    assert page.size is not None
    found = []
    for cell in page.cells:
        text = cell.text.strip()
        if not text:
            continue
        box = cell.rect.to_bounding_box().to_top_left_origin(page.size.height)
        cx, cy = (box.l + box.r) / 2, (box.t + box.b) / 2
        if bbox.l <= cx <= bbox.r and bbox.t <= cy <= bbox.b:
            found.append((box, len(text)))
    return found


def _lines(boxes: list[BoundingBox]) -> list[_Line]:
    """Group cell boxes into lines: a box joins the line its vertical centre falls inside."""
    lines: list[_Line] = []
    for box in sorted(boxes, key=lambda b: (b.t + b.b) / 2):
        centre = (box.t + box.b) / 2
        if lines and lines[-1].top <= centre <= lines[-1].bottom:
            lines[-1].boxes.append(box)
        else:
            lines.append(_Line([box]))
    return lines


def _overlaps(span: tuple[float, float], columns: list[tuple[float, float]]) -> bool:
    return any(span[0] < c1 and c0 < span[1] for c0, c1 in columns)


def _grid_span(lines: list[_Line]) -> tuple[int, int] | None:
    """Index range [first, last) of the first block of aligned multi-column lines, with its header.

    A grid is ``MIN_GRID_ROWS`` or more consecutive lines of ``MIN_GRID_COLUMNS`` or more
    segments, each overlapping the segments of the line before. Lines right above it whose
    segments all sit in the grid's columns (bar the first, which holds the row labels) are
    its column headers.
    """
    pitch = median(line.bottom - line.top for line in lines) if lines else 0.0
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and len(lines[end].segments) >= MIN_GRID_COLUMNS:
            if end > start:
                above, here = lines[end - 1], lines[end]
                aligned = sum(_overlaps(seg, above.segments) for seg in here.segments)
                if aligned < MIN_GRID_COLUMNS or here.top - above.bottom > 3 * pitch:
                    break
            end += 1
        if end - start >= MIN_GRID_ROWS:
            columns = lines[start].segments
            first = start
            while first > 0 and lines[first].top - lines[first - 1].bottom <= 2 * pitch:
                header = lines[first - 1].segments
                inside = all(_overlaps(seg, columns[1:]) for seg in header)
                if not (inside or (len(header) >= MIN_GRID_COLUMNS and all(_overlaps(s, columns) for s in header))):
                    break
                first -= 1
            return first, end
        start = max(end, start + 1)
    return None


def _union(lines: list[_Line]) -> BoundingBox:
    boxes = [b for line in lines for b in line.boxes]
    return BoundingBox(
        l=min(b.l for b in boxes),
        t=min(b.t for b in boxes),
        r=max(b.r for b in boxes),
        b=max(b.b for b in boxes),
        coord_origin=CoordOrigin.TOPLEFT,
    )


def _paragraphs(lines: list[_Line]) -> list[list[_Line]]:
    """Lines split where the vertical gap exceeds the usual line spacing (a paragraph break)."""
    if not lines:
        return []
    gaps = [b.top - a.bottom for a, b in zip(lines, lines[1:], strict=False)]
    usual = median(gaps) if gaps else 0.0
    height = median(line.bottom - line.top for line in lines)
    blocks = [[lines[0]]]
    for gap, line in zip(gaps, lines[1:], strict=True):
        if gap > max(usual, 0.0) + 0.5 * height:
            blocks.append([line])
        else:
            blocks[-1].append(line)
    return blocks


def split_text_figure(figure: Cluster, lines: list[_Line], next_id: int) -> list[Cluster]:
    """Text and table clusters replacing a figure whose content is ``lines`` of text."""
    parts: list[tuple[DocItemLabel, list[_Line]]] = []
    rest = lines
    while rest:
        grid = _grid_span(rest)
        if grid is None:
            parts += [(DocItemLabel.TEXT, block) for block in _paragraphs(rest)]
            break
        first, end = grid
        parts += [(DocItemLabel.TEXT, block) for block in _paragraphs(rest[:first])]
        parts.append((DocItemLabel.TABLE, rest[first:end]))
        rest = rest[end:]
    confidence = max(figure.confidence, 0.5)
    return [
        Cluster(id=next_id + i, label=label, confidence=confidence, bbox=_union(block), cells=[])
        for i, (label, block) in enumerate(parts)
    ]


def relabel_text_figures(page: Page, min_chars: int) -> None:
    """Replace "figure" clusters holding ``min_chars`` or more characters of text (PDF or OCR cells).

    Each becomes text clusters, one per paragraph, and a table cluster per grid of words.
    """
    layout = page.predictions.layout
    if min_chars <= 0 or layout is None or page.size is None:
        return
    next_id = max((c.id for c in layout.clusters), default=0) + 1
    clusters: list[Cluster] = []
    for cluster in layout.clusters:
        cells = _cell_boxes_in(page, cluster.bbox) if cluster.label == DocItemLabel.PICTURE else []
        if sum(chars for _box, chars in cells) < min_chars:
            clusters.append(cluster)
            continue
        replacement = split_text_figure(cluster, _lines([box for box, _chars in cells]), next_id)
        next_id += len(replacement)
        clusters += replacement
    layout.clusters = clusters
