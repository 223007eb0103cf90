"""Rows of a predicted table that are one ruled row: lines of multi-line cells, merged back.

SLANet-plus splits a ruled row whose cells hold two or more lines into one row per line, with the
first column's cell spanning them. Where no horizontal rule separates those lines, they are one
row of the table as drawn (as docling's TableFormer reads it): the lines are joined per column.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from docling_core.types.doc import BoundingBox, CoordOrigin, TableCell
from PIL import Image

RULE_DARK = 160  # grey level below which a pixel is ink
RULE_COVER = 0.5  # share of the table width a horizontal rule's pixel row is inked over


def rule_finder(grey: Image.Image, box: BoundingBox, scale: float) -> Callable[[float, float], bool]:
    """``between(y0, y1)``: is a horizontal rule drawn across the table between page heights y0 and y1?"""
    ink = np.asarray(grey) < RULE_DARK
    covered = ink.mean(axis=1) >= RULE_COVER if ink.size else np.zeros(0, dtype=bool)

    def between(y0: float, y1: float) -> bool:
        a, b = int((y0 - box.t) * scale), int(np.ceil((y1 - box.t) * scale))
        return bool(covered[max(a, 0) : max(b, 0)].any())

    return between


def _row_extent(cells: list[TableCell], row: int) -> tuple[float, float] | None:
    """Top and bottom of the text of the single-row cells of ``row`` (their boxes are fitted to it)."""
    boxes = [c.bbox for c in cells if c.start_row_offset_idx == row and c.row_span == 1 and c.text]
    if not boxes:
        return None
    return min(b.t for b in boxes), max(b.b for b in boxes)


def merge_unruled_rows(cells: list[TableCell], header_rows: int, ruled: Callable[[float, float], bool]) -> list[TableCell]:
    """Merge the rows that a body cell of the first column spans when no rule runs between them."""
    bands: list[tuple[int, int]] = []  # [first, end) row ranges to collapse
    for stub in cells:
        r0, r1 = stub.start_row_offset_idx, stub.end_row_offset_idx
        if stub.start_col_offset_idx != 0 or r1 - r0 < 2 or r0 < header_rows:
            continue
        if any(c.start_row_offset_idx < r1 and c.end_row_offset_idx > r0 and
               (c.start_row_offset_idx < r0 or c.end_row_offset_idx > r1) for c in cells):
            continue  # a cell crosses the band's edge: not one row
        extents = [_row_extent(cells, r) for r in range(r0, r1)]
        if any(e is None for e in extents):
            continue
        if any(ruled(a[1], b[0]) for a, b in zip(extents, extents[1:], strict=False)):  # type: ignore[index]
            continue
        bands.append((r0, r1))
    if not bands:
        return cells
    new_row: dict[int, int] = {}
    band_of = {r: band for band in bands for r in range(*band)}
    index = 0
    for row in range(max(c.end_row_offset_idx for c in cells) + 1):
        band = band_of.get(row)
        if band is not None and row != band[0]:
            new_row[row] = new_row[band[0]]
        else:
            new_row[row] = index
            index += 1
    merged: dict[tuple[int, int], TableCell] = {}
    for cell in sorted(cells, key=lambda c: (c.start_row_offset_idx, c.start_col_offset_idx)):
        start = new_row[cell.start_row_offset_idx]
        end = new_row[cell.end_row_offset_idx - 1] + 1
        key = (start, cell.start_col_offset_idx)
        kept = merged.get(key)
        if kept is None:
            merged[key] = cell.model_copy(
                update={"start_row_offset_idx": start, "end_row_offset_idx": end, "row_span": end - start}
            )
            continue
        b, k = cell.bbox, kept.bbox
        kept.text = " ".join(t for t in (kept.text, cell.text) if t)
        kept.bbox = BoundingBox(
            l=min(b.l, k.l), t=min(b.t, k.t), r=max(b.r, k.r), b=max(b.b, k.b), coord_origin=CoordOrigin.TOPLEFT
        )
    return list(merged.values())
