"""The extract stage: a PDF in the inbox -> docling's document and per-page Markdown, in page-range shards.

``plan_extract`` checks the PDF up front (``pdf_inspection``) and cuts it into page ranges;
``run_extract`` converts one range (``docling_convert.extract_pdf``) into a part; ``merge_extract``
joins the parts: the shards' ``DoclingDocument``s concatenated into ``document.json`` (what the chunker
reads), their pages into ``pages.json`` and a readable ``document.md``. The orchestrator runs the ranges
as parallel tasks.
"""

from __future__ import annotations

import time

from ray_rag_dagster.backends import build_object_store
from ray_rag_dagster.costs import usd
from ray_rag_dagster.errors import DocumentGone
from ray_rag_dagster.ids import version_of
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.docling_convert import ExtractOptions, extract_pdf
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.pdf_inspection import checked_page_count
from ray_rag_dagster.stages.source import require_current_source


def _extract_options(settings: Settings) -> ExtractOptions:
    return ExtractOptions(
        engine=settings.extract_engine,
        artifacts_path=settings.docling_artifacts_path,
        ocr=settings.ocr,
        describe_pictures=settings.describe_pictures,
        vision_model=settings.openai_vision_model,
        vision_base_url=settings.openai_base_url,
        vision_api_key=settings.openai_api_key if settings.describe_pictures else None,
    )


def page_shards(page_count: int, pages_per_shard: int) -> list[tuple[int, int]]:
    """Split 1..page_count into nearly equal ranges of at most ``pages_per_shard`` pages (0: one range)."""
    if pages_per_shard <= 0 or page_count <= pages_per_shard:
        return [(1, max(page_count, 1))]
    shards = -(-page_count // pages_per_shard)
    bounds = [round(index * page_count / shards) for index in range(shards + 1)]
    return [(bounds[index] + 1, bounds[index + 1]) for index in range(shards)]


def plan_extract(settings: Settings, document: DocumentRef) -> list[tuple[int, int]]:
    """Check the PDF (bad input fails here, cheaply) and cut it into page ranges for parallel tasks.

    Page-range sharding measured 1.6× (2 shards) to 1.8× (4 shards) faster on a 97-page protocol on 2 CPUs,
    with identical pages (bench/results/REPORT.md, "scaling").
    """
    page_count = checked_page_count(settings, _source_bytes(settings, document), document.name)
    return page_shards(page_count, settings.extract_pages_per_shard)


def _source_bytes(settings: Settings, document: DocumentRef) -> bytes:
    """The PDF as the inbox holds it now; a file replaced since the run started is not this version."""
    try:
        data, etag = build_object_store(settings).get_with_etag(document.source_key)
    except FileNotFoundError:
        raise DocumentGone.deleted(document.name) from None
    if version_of(etag) != document.version:
        raise DocumentGone.replaced(document.name, document.version)
    return data


def run_extract(settings: Settings, document: DocumentRef, page_range: tuple[int, int] | None = None) -> StageOutput:
    """Extract one page range (default: all pages) into ``extracted/<document_id>/parts/``.

    :func:`merge_extract` joins the parts into the stage's output.
    """
    started = time.perf_counter()
    store = build_object_store(settings)
    options = _extract_options(settings)
    result = extract_pdf(_source_bytes(settings, document), document.name, options, page_range=page_range)
    key = keys.extract_part(document, (result.pages[0].page_no, result.pages[-1].page_no))
    uri = store.put_json(
        key,
        {
            "version": document.version,
            "engine": result.engine,
            "pages": [page.model_dump() for page in result.pages],
            "document": result.document,
        },
    )
    return StageOutput(
        stage="extract",
        document=document,
        key=key,
        uri=uri,
        counts={
            "pages": len(result.pages),
            "elements": sum(page.elements for page in result.pages),
            "tables": sum(page.tables for page in result.pages),
            "pictures": sum(page.pictures for page in result.pages),
            "ocr_pages": sum(page.ocr for page in result.pages),
            "described_pictures": result.described_pictures,
            "tokens": result.vision_input_tokens + result.vision_output_tokens,
            "vision_input_tokens": result.vision_input_tokens,
            "vision_output_tokens": result.vision_output_tokens,
            # docling's partial success, never silent: counted here, described in details
            "conversion_errors": len(result.conversion_errors),
            "cost_usd": usd(
                settings.prices, options.vision_model, result.vision_input_tokens, result.vision_output_tokens
            ),
        },
        details={"engine": result.engine, **({"conversion_errors": "; ".join(result.conversion_errors)[:500]}
                                             if result.conversion_errors else {})},
        seconds=time.perf_counter() - started,
    )


def merge_extract(settings: Settings, document: DocumentRef, parts: list[StageOutput]) -> StageOutput:
    """Join the page ranges into ``extracted/<document_id>/<version>/``: ``document.json`` (the shards'
    ``DoclingDocument``s concatenated), ``pages.json`` (per-page Markdown and counts) and ``document.md``.

    ``task_seconds`` sums the parts' extraction time; the orchestrator sets ``seconds`` to the wall time.
    """
    store = build_object_store(settings)
    parts = sorted(parts, key=lambda part: part.key)
    try:
        shards = [store.get_json(part.key) for part in parts]
    except FileNotFoundError:
        # Merged already (a retried merge: the first attempt ran, then its worker was lost).
        merged = store.get_json(keys.extracted_pages(document)) if store.exists(keys.extracted_pages(document)) else None
        current = merged is not None and merged["version"] == document.version
        if not current or not store.exists(keys.extracted_document(document)):
            # Parts removed under us: the PDF was deleted (its outputs removed) or replaced mid-run.
            require_current_source(store, document)
            raise
        shards = [{"pages": merged["pages"], "document": None}]
    pages = [page for shard in shards for page in shard["pages"]]
    if [page["page_no"] for page in pages] != list(range(1, len(pages) + 1)):
        raise RuntimeError(f"{document.name}: extracted page ranges do not cover the document")
    if shards[0]["document"] is not None:
        store.put_json(keys.extracted_document(document), concatenate_documents([shard["document"] for shard in shards]))
    key = keys.extracted_pages(document)
    uri = store.put_json(
        key,
        {
            "document_id": document.document_id,
            "version": document.version,
            "source_key": document.source_key,
            "engine": parts[0].details["engine"],
            "document_key": keys.extracted_document(document),
            "pages": pages,
        },
    )
    readable = "\n\n".join(f"<!-- page {page['page_no']} -->\n\n{page['markdown']}" for page in pages)
    store.put_bytes(keys.extracted_markdown(document), readable.encode())
    store.delete_prefix(keys.extract_parts_prefix(document))
    counts: dict[str, float] = {}
    for part in parts:
        for name, value in part.counts.items():
            counts[name] = counts.get(name, 0.0) + value
    seconds = sum(part.seconds for part in parts)
    counts["shards"] = len(parts)
    counts["task_seconds"] = round(seconds, 3)
    counts["task_seconds_per_page"] = round(seconds / max(len(pages), 1), 3)
    return StageOutput(
        stage="extract", document=document, key=key, uri=uri, counts=counts, seconds=seconds,
        details={"engine": parts[0].details["engine"],
                 **({"conversion_errors": "; ".join(part.details["conversion_errors"] for part in parts
                                                   if "conversion_errors" in part.details)[:500]}
                    if any("conversion_errors" in part.details for part in parts) else {})},
    )


def concatenate_documents(shards: list[dict]) -> dict:
    """One ``DoclingDocument`` (JSON) from the page-range shards' documents, in page order.

    docling-core's ``concatenate`` renumbers pages from 1 in order, which keeps the PDF's page numbers only
    when the shards cover pages 1..N without a gap: checked, never assumed.
    """
    from docling_core.types.doc import DoclingDocument

    docs = [DoclingDocument.model_validate(shard) for shard in shards]
    expected = sorted(page_no for doc in docs for page_no in doc.pages)
    merged = docs[0] if len(docs) == 1 else DoclingDocument.concatenate(docs)
    if sorted(merged.pages) != expected or expected != list(range(1, len(expected) + 1)):
        raise RuntimeError(f"shards' pages {expected[:3]}..{expected[-3:]} do not run 1..N: page numbers would shift")
    return merged.export_to_dict()
