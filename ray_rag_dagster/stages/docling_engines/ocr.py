"""OCR: rapidocr with the wheel's bundled PP-OCR models, on pages that have no text layer only."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from docling.datamodel.accelerator_options import AcceleratorOptions
from docling.datamodel.base_models import Page
from docling.datamodel.document import ConversionResult
from docling.datamodel.pipeline_options import OcrMode, RapidOcrOptions
from docling.models.stages.ocr.rapid_ocr_model import RapidOcrModel
from docling_core.types.doc import BoundingBox, CoordOrigin

from ray_rag_dagster.stages.docling_engines.bundled import bundled_file
from ray_rag_dagster.stages.docling_engines.text_figures import relabel_text_figures


def has_text_layer(page: Page) -> bool:
    """True if the PDF parser found any non-blank text cell on the page."""
    return any(cell.text.strip() and not cell.from_ocr for cell in page.cells)


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
        det_model_path=str(bundled_file("rapidocr", "models", "PP-OCRv6_det_small.onnx")),
        rec_model_path=str(bundled_file("rapidocr", "models", "PP-OCRv6_rec_small.onnx")),
        cls_model_path=str(bundled_file("rapidocr", "models", "ch_ppocr_mobile_v2.0_cls_mobile.onnx")),
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
