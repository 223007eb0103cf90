"""1. Extraction: pages/s and quality of three extractors on docling's test PDFs, all in this process."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import DOCLING_GROUNDTRUTH, DOCLING_PDFS, Stopwatch, pdf_text_pages, ratio
from bench.metrics import heading_recall, table_cell_f1, word_similarity

Extractor = Callable[[Path], tuple[str, int]]  # PDF → (Markdown, pages)


def project_extractor() -> Extractor:
    from ray_rag_dagster.stages.docling_convert import extract_pdf

    def run(path: Path) -> tuple[str, int]:
        result = extract_pdf(path.read_bytes(), path.name)
        markdown = "\n\n".join(page.markdown for page in result.pages)
        return markdown, result.page_count

    return run


def native_pipeline_extractor() -> Extractor:
    """docling's model-free NativePdfPipeline: text cells in parser order, no layout, headings or tables."""
    from docling.datamodel.base_models import DocumentStream, InputFormat
    from docling.datamodel.pipeline_options import NativePdfPipelineOptions
    from docling.document_converter import DocumentConverter, NativePdfFormatOption

    converter = DocumentConverter(
        allowed_formats=[InputFormat.PDF],
        format_options={InputFormat.PDF: NativePdfFormatOption(pipeline_options=NativePdfPipelineOptions())},
    )
    converter.initialize_pipeline(InputFormat.PDF)

    def run(path: Path) -> tuple[str, int]:
        result = converter.convert(DocumentStream(name=path.name, stream=io.BytesIO(path.read_bytes())))
        return result.document.export_to_markdown(), result.document.num_pages()

    return run


def text_layer_extractor() -> Extractor:
    def run(path: Path) -> tuple[str, int]:
        pages = pdf_text_pages(path)
        return "\n\n".join(pages), len(pages)

    return run


EXTRACTORS: dict[str, Callable[[], Extractor]] = {
    "project (docling + offline engines)": project_extractor,
    "docling NativePdfPipeline": native_pipeline_extractor,
    "pypdfium2 text layer": text_layer_extractor,
}


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def run(quick: bool) -> dict[str, Any]:
    pdfs = sorted(DOCLING_PDFS.glob("*.pdf"))
    if quick:
        pdfs = [p for p in pdfs if (DOCLING_GROUNDTRUTH / f"{p.stem}.md").is_file()][:1]
    extractors = {name: build() for name, build in EXTRACTORS.items()}
    for extract in extractors.values():  # warm: models loaded and code paths touched before timing
        extract(pdfs[0])
    per_document: list[dict[str, Any]] = []
    totals = {name: {"pages": 0, "seconds": 0.0} for name in extractors}
    for pdf in pdfs:
        truth_path = DOCLING_GROUNDTRUTH / f"{pdf.stem}.md"
        truth = truth_path.read_text() if truth_path.is_file() else None
        for name, extract in extractors.items():
            watch = Stopwatch()
            markdown, pages = extract(pdf)
            seconds = watch.seconds
            totals[name]["pages"] += pages
            totals[name]["seconds"] += seconds
            row: dict[str, Any] = {
                "document": pdf.name, "extractor": name, "pages": pages, "seconds": round(seconds, 3)
            }
            if truth is not None:
                row |= {
                    "word_similarity": round(word_similarity(truth, markdown), 4),
                    "heading_recall": heading_recall(truth, markdown),
                    "table_cell_f1": table_cell_f1(truth, markdown),
                }
            per_document.append(row)
    summary = []
    project = next(iter(extractors))
    project_rate = totals[project]["pages"] / totals[project]["seconds"]
    for name in extractors:
        rows = [r for r in per_document if r["extractor"] == name and "word_similarity" in r]
        rate = totals[name]["pages"] / totals[name]["seconds"]
        summary.append(
            {
                "extractor": name,
                "pages": totals[name]["pages"],
                "pages_per_second": round(rate, 2),
                "speed_vs_project": ratio(rate, project_rate),
                "word_similarity": _mean([r["word_similarity"] for r in rows]),
                "heading_recall": _mean([r["heading_recall"] for r in rows]),
                "table_cell_f1": _mean([r["table_cell_f1"] for r in rows]),
            }
        )
    return {"documents": [p.name for p in pdfs], "summary": summary, "per_document": per_document}
