"""Table structure: rapid-table's bundled SLANet-plus, its cells filled with the PDF's own words."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from docling.datamodel.accelerator_options import AcceleratorOptions
from docling.datamodel.base_models import Cluster, Page, Table, TableStructurePrediction
from docling.datamodel.document import ConversionResult
from docling.datamodel.pipeline_options import BaseTableStructureOptions
from docling.models.base_table_model import BaseTableStructureModel
from docling_core.types.doc import BoundingBox, CoordOrigin, DocItemLabel, TableCell
from docling_core.types.doc.page import TextCell, TextCellUnit
from PIL import ImageOps

from ray_rag_dagster.stages.docling_engines.bundled import bundled_file, to_bgr
from ray_rag_dagster.stages.docling_engines.table_rows import merge_unruled_rows, rule_finder


class SlanetTableOptions(BaseTableStructureOptions):
    """Options of the bundled SLANet-plus table structure engine."""

    kind: ClassVar[str] = "ray_rag_slanet_plus"
    scale: float = 2.0  # table crops are rendered at 144 dpi
    # points of page around the table box; each margin is one SLANet-plus run, the best-fitting grid wins
    margins: tuple[float, ...] = (0.0, 5.0, 10.0)
    num_threads: int = 1


class SlanetTableModel(BaseTableStructureModel):
    """Table structure from rapid-table's bundled SLANet-plus, filled with the PDF's words.

    SLANet-plus predicts the HTML skeleton and one box per cell; each word cell of the PDF
    parser (no OCR needed) goes to the predicted cell it overlaps most, so cell text is the
    exact text layer. Its boxes are first stretched onto the words' extent (they drift on long
    tables), the crop is tried at a few margins (the prediction shifts with it), and the lines
    of multi-line cells it split into rows are joined back (``table_rows``).
    """

    def __init__(
        self,
        enabled: bool,
        artifacts_path: Path | None,
        options: SlanetTableOptions,
        accelerator_options: AcceleratorOptions,
        enable_remote_services: bool = False,
    ) -> None:
        self.enabled = enabled
        self.options = options
        self._lock = threading.Lock()
        if enabled:
            from rapid_table.table_matcher import TableMatch
            from rapid_table.table_structure import TableStructurer

            self._structurer = TableStructurer(
                {
                    "model_path": str(bundled_file("rapid_table", "models", "slanet-plus.onnx")),
                    "use_cuda": False,
                    "intra_op_num_threads": options.num_threads,
                }
            )
            self._matcher = TableMatch()

    @classmethod
    def get_options_type(cls) -> type[SlanetTableOptions]:
        return SlanetTableOptions

    def predict_tables(self, conv_res: ConversionResult, pages: Sequence[Page]) -> Sequence[TableStructurePrediction]:
        predictions: list[TableStructurePrediction] = []
        for page in pages:
            prediction = page.predictions.tablestructure or TableStructurePrediction()
            if page._backend is not None and page._backend.is_valid() and page.predictions.layout is not None:
                segmented = page._backend.get_segmented_page()
                for cluster in page.predictions.layout.clusters:
                    if cluster.label in (DocItemLabel.TABLE, DocItemLabel.DOCUMENT_INDEX):
                        prediction.table_map[cluster.id] = self._predict_table(page, cluster, segmented)
            page.predictions.tablestructure = prediction
            predictions.append(prediction)
        return predictions

    def _words(self, page: Page, cluster: Cluster, segmented: Any) -> list[TextCell]:
        """Word cells inside the table (top-left origin); line cells if words are missing."""
        assert page.size is not None
        cells: list[TextCell] = []
        if segmented is not None:
            cells = list(segmented.get_cells_in_bbox(cell_unit=TextCellUnit.WORD, bbox=cluster.bbox))
        if not cells:
            cells = list(cluster.cells)
        words = []
        for cell in cells:
            if cell.text.strip():
                cell = cell.model_copy()
                cell.rect = cell.rect.to_top_left_origin(page.size.height)
                words.append(cell)
        return words

    def _slanet(self, page: Page, cluster: Cluster, margin: float) -> tuple[list[str], np.ndarray]:
        """SLANet-plus on the table box grown by ``margin`` points: HTML tokens, cell boxes in page points."""
        assert page.size is not None
        scale = self.options.scale
        box = BoundingBox(
            l=max(cluster.bbox.l - margin, 0.0),
            t=max(cluster.bbox.t - margin, 0.0),
            r=min(cluster.bbox.r + margin, page.size.width),
            b=min(cluster.bbox.b + margin, page.size.height),
            coord_origin=CoordOrigin.TOPLEFT,
        )
        crop = page.get_image(scale=scale, cropbox=box)
        if crop is None or crop.width <= 4 or crop.height <= 4:
            return [], np.zeros((0, 4))
        # grey with stretched contrast: on a tinted background SLANet-plus sees one cell
        img = to_bgr(ImageOps.autocontrast(crop.convert("L"), cutoff=1))
        with self._lock:
            structure, raw_boxes, _ = self._structurer(img.copy())
        if not structure or raw_boxes is None or not len(raw_boxes):
            return [], np.zeros((0, 4))
        boxes = _slanet_boxes(img, np.asarray(raw_boxes, dtype=float)) / scale
        return structure, boxes + [box.l, box.t, box.l, box.t]

    def _predict_table(self, page: Page, cluster: Cluster, segmented: Any) -> Table:
        assert page.size is not None
        words = self._words(page, cluster, segmented)
        if not words:
            return _single_cell_table(page, cluster, words)
        word_boxes = np.array([[b.l, b.t, b.r, b.b] for b in (word.rect.to_bounding_box() for word in words)])
        # SLANet-plus's answer shifts with the crop: try a few margins, keep the best-fitting grid
        best: tuple[float, list[str], list[tuple[int, int, int, int]], np.ndarray, list[list[str]]] | None = None
        for margin in self.options.margins:
            structure, cell_boxes = self._slanet(page, cluster, margin)
            logic = self._matcher.decode_logic_points(structure) if structure else []
            if not logic or len(logic) != len(cell_boxes):
                continue
            cell_boxes = fit_to_extent(cell_boxes, word_boxes)
            owner, fit = assign_words(word_boxes, cell_boxes)
            texts: list[list[str]] = [[] for _ in logic]
            for word, cell in zip(words, owner, strict=True):
                texts[cell].append(word.text.strip())
            score = sum(1 for t in texts if t) * fit  # cells filled, weighted by how well words sit in them
            if best is None or score > best[0]:
                best = (score, structure, logic, cell_boxes, texts)
        if best is None:
            return _single_cell_table(page, cluster, words)
        _score, structure, logic, cell_boxes, texts = best

        header_rows = _header_rows(structure)
        table_cells: list[TableCell] = []
        for (r0, r1, c0, c1), cbox, parts in zip(logic, cell_boxes, texts, strict=True):
            table_cells.append(
                TableCell(
                    bbox=BoundingBox(l=cbox[0], t=cbox[1], r=cbox[2], b=cbox[3], coord_origin=CoordOrigin.TOPLEFT),
                    row_span=r1 - r0 + 1,
                    col_span=c1 - c0 + 1,
                    start_row_offset_idx=r0,
                    end_row_offset_idx=r1 + 1,
                    start_col_offset_idx=c0,
                    end_col_offset_idx=c1 + 1,
                    text=" ".join(parts),
                    column_header=r0 < header_rows,
                )
            )
        grey = page.get_image(scale=self.options.scale, cropbox=cluster.bbox)
        if grey is not None:  # rows split from multi-line cells, unless a rule divides them
            ruled = rule_finder(grey.convert("L"), cluster.bbox, self.options.scale)
            table_cells = merge_unruled_rows(table_cells, header_rows, ruled)
        num_rows = max(c.end_row_offset_idx for c in table_cells)
        num_cols = max(c.end_col_offset_idx for c in table_cells)
        return Table(
            otsl_seq=[],
            table_cells=table_cells,
            num_rows=num_rows,
            num_cols=num_cols,
            id=cluster.id,
            page_no=page.page_no,
            cluster=cluster,
            label=cluster.label,
        )


def _slanet_boxes(img: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """SLANet-plus cell polygons/boxes -> ``[x0, y0, x1, y1]`` in crop pixels.

    SLANet-plus predicts on a 488 px letterboxed input; this is rapid-table's own rescaling
    (``RapidTable.adapt_slanet_plus``).
    """
    h, w = img.shape[:2]
    ratio = min(488 / h, 488 / w)
    raw = raw.copy()
    raw[:, 0::2] *= 488 / (w * ratio)
    raw[:, 1::2] *= 488 / (h * ratio)
    xs, ys = raw[:, 0::2], raw[:, 1::2]
    return np.stack([xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)], axis=1)


def fit_to_extent(cell_boxes: np.ndarray, word_boxes: np.ndarray) -> np.ndarray:
    """Stretch the predicted cell boxes, per axis, onto the extent of the table's words.

    SLANet-plus regresses its boxes on a 488 px input: on a table of many rows they drift,
    typically shrinking towards the top, so that lower rows overlap the words of the row above.
    The words fix the true extent; a linear map from the boxes' extent onto theirs removes
    the drift while keeping the predicted order and proportions.
    """
    if len(cell_boxes) < 2 or len(word_boxes) < 2:
        return cell_boxes
    fitted = cell_boxes.copy()
    for lo, hi in ((0, 2), (1, 3)):
        src0, src1 = cell_boxes[:, lo].min(), cell_boxes[:, hi].max()
        dst0, dst1 = word_boxes[:, lo].min(), word_boxes[:, hi].max()
        if src1 - src0 > 1 and dst1 - dst0 > 1:
            factor = (dst1 - dst0) / (src1 - src0)
            fitted[:, lo] = dst0 + (cell_boxes[:, lo] - src0) * factor
            fitted[:, hi] = dst0 + (cell_boxes[:, hi] - src0) * factor
    return fitted


def assign_words(word_boxes: np.ndarray, cell_boxes: np.ndarray) -> tuple[list[int], float]:
    """Each word's cell (largest overlap; none: nearest centre), and the mean share of word area inside it."""
    owners: list[int] = []
    inside = 0.0
    centres = np.stack([(cell_boxes[:, 0] + cell_boxes[:, 2]) / 2, (cell_boxes[:, 1] + cell_boxes[:, 3]) / 2], axis=1)
    for wx0, wy0, wx1, wy1 in word_boxes:
        ix = np.clip(np.minimum(cell_boxes[:, 2], wx1) - np.maximum(cell_boxes[:, 0], wx0), 0, None)
        iy = np.clip(np.minimum(cell_boxes[:, 3], wy1) - np.maximum(cell_boxes[:, 1], wy0), 0, None)
        overlap = ix * iy
        if overlap.max() > 0:
            owners.append(int(overlap.argmax()))
            inside += float(overlap.max()) / max((wx1 - wx0) * (wy1 - wy0), 1e-6)
        else:
            owners.append(int(np.abs(centres - [(wx0 + wx1) / 2, (wy0 + wy1) / 2]).sum(axis=1).argmin()))
    return owners, inside / max(len(word_boxes), 1)


def _header_rows(structure: list[str]) -> int:
    """Number of rows inside ``<thead>`` (SLANet marks the column header rows), at least 1."""
    rows, inside = 0, False
    for tag in structure:
        if tag == "<thead>":
            inside = True
        elif tag == "</thead>":
            break
        elif inside and tag == "</tr>":
            rows += 1
    return max(rows, 1)


def _single_cell_table(page: Page, cluster: Cluster, words: list[TextCell]) -> Table:
    """Fallback when SLANet finds no structure: keep the words, as a one-cell table."""
    text = " ".join(w.text.strip() for w in words)
    cells = (
        [
            TableCell(
                bbox=cluster.bbox,
                start_row_offset_idx=0,
                end_row_offset_idx=1,
                start_col_offset_idx=0,
                end_col_offset_idx=1,
                text=text,
                column_header=True,
            )
        ]
        if text
        else []
    )
    return Table(
        otsl_seq=[],
        table_cells=cells,
        num_rows=1 if cells else 0,
        num_cols=1 if cells else 0,
        id=cluster.id,
        page_no=page.page_no,
        cluster=cluster,
        label=cluster.label,
    )
