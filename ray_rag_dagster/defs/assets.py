"""The five stages as Dagster assets, one partition per document.

Each asset is thin: it resolves its input (a small manifest from the upstream asset), submits the stage
function to Ray through :class:`RayRunner`, and records metadata and status. Payloads stay in object storage.
"""


import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from ray_rag_dagster.backends.status_store import StatusStore
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.ray_runner import RayPlacement, RayRunner
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.errors import DocumentError
from ray_rag_dagster.ids import document_id_for, version_of
from ray_rag_dagster.stages.chunk import run_chunk
from ray_rag_dagster.stages.embed import run_embed
from ray_rag_dagster.stages.enrich import run_enrich
from ray_rag_dagster.stages.extract import merge_extract, plan_extract, run_extract
from ray_rag_dagster.stages.load import run_load
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.remove import remove_document

GROUP = "rag_ingest"
OWNER_TAG = "ray_rag/owner"  # set by the CLI, which claims documents before it launches their runs
TRIGGER_TAG = "ray_rag/trigger"  # "sensor" | "cli"; anything else (the UI, the shell) means "reprocess"
# Status-store count fields each stage reports (seconds, tokens and cost are cumulative totals).
STATUS_COUNTS = {"extract": ("pages",), "chunk": ("chunks",), "load": ("vectors",)}
TOTALS = ("seconds", "tokens", "cost_usd")


def _metadata(output: StageOutput, placement: RayPlacement) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "document_id": dg.MetadataValue.text(output.document.document_id),
        "source": dg.MetadataValue.text(output.document.source_key),
        "processing_version": dg.MetadataValue.text(output.document.version),
        "output": dg.MetadataValue.url(output.uri),
        "seconds": dg.MetadataValue.float(round(output.seconds, 3)),
        "pipeline_seconds": dg.MetadataValue.float(round(output.totals["seconds"], 3)),
        "pipeline_tokens": dg.MetadataValue.int(int(output.totals["tokens"])),
        "pipeline_usd": dg.MetadataValue.float(round(output.totals["cost_usd"], 6)),
        "ray_node": dg.MetadataValue.text(f"{placement.node_id[:12]} ({placement.host}, pid {placement.pid})"),
    }
    for name, value in output.counts.items():
        if name == "cost_usd":
            metadata["estimated_usd"] = dg.MetadataValue.float(float(value))
        elif float(value).is_integer():
            metadata[name] = dg.MetadataValue.int(int(value))
        else:
            metadata[name] = dg.MetadataValue.float(float(value))
    for name, value in output.details.items():
        metadata[name] = dg.MetadataValue.text(value)
    if "estimated_usd" not in metadata:
        metadata["estimated_usd"] = dg.MetadataValue.float(0.0)
    return metadata


@contextmanager
def _failures_recorded(pipeline: RagPipeline, stage: str, document: DocumentRef) -> Iterator[None]:
    """Turn any stage failure into a FAILED status row and a one-line run failure naming the document."""
    try:
        yield
    except DocumentError as error:
        pipeline.status_store().fail(document.document_id, document.version, stage, str(error))
        raise dg.Failure(description=str(error), allow_retries=False) from None
    except Exception as error:  # noqa: BLE001 - any stage crash must end FAILED with a reason
        cause = getattr(error, "cause", None) or error
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        reason = f"{document.name}: {stage} failed: {type(cause).__name__}: {first_line}"
        pipeline.status_store().fail(document.document_id, document.version, stage, reason)
        raise dg.Failure(description=reason) from error


def _record(
    context: dg.AssetExecutionContext,
    pipeline: RagPipeline,
    output: StageOutput,
    placement: RayPlacement,
    upstream: StageOutput | None,
) -> dg.Output:
    """Add this stage to the document's running totals, mirror them to the status store, emit metadata."""
    document = output.document
    previous = upstream.totals if upstream else {}
    this_stage = {"seconds": output.seconds, **output.counts}
    output.totals = {name: previous.get(name, 0.0) + float(this_stage.get(name, 0.0)) for name in TOTALS}
    counts = {name: output.counts[name] for name in STATUS_COUNTS.get(output.stage, ()) if name in output.counts}
    pipeline.status_store().record_stage(document.document_id, document.version, output.stage, **output.totals, **counts)
    context.log.info(f"{output.stage} {document.name}: {output.counts} in {output.seconds:.2f}s on {placement.host}")
    return dg.Output(output.model_dump(), metadata=_metadata(output, placement))


def _submit(
    context: dg.AssetExecutionContext,
    pipeline: RagPipeline,
    ray_runner: RayRunner,
    fn: Callable[..., StageOutput],
    stage: str,
    upstream: StageOutput,
) -> dg.Output:
    """Run one stage on Ray on the upstream stage's output; record status and metadata."""
    with _failures_recorded(pipeline, stage, upstream.document):
        output, placement = ray_runner.run(fn, pipeline.settings(), upstream.document, upstream.key)
    return _record(context, pipeline, output, placement, upstream)


def _resolve_document(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, status: StatusStore
) -> DocumentRef | None:
    """The partition's source PDF and its current version (content hash); None if it left the inbox."""
    document_id = context.partition_key
    known = status.get(document_id)
    if known is None:
        raise dg.Failure(description=f"{document_id}: unknown document (no status row); add it through the inbox")
    store = pipeline.object_store()
    current = [info for info in store.list(known.source_key) if info.key == known.source_key]
    if not current:
        return None
    assert document_id_for(known.source_key) == document_id
    version = version_of(current[0].etag)
    status.register(document_id, version, known.source_key)
    return DocumentRef(document_id=document_id, version=version, source_key=known.source_key)


@dg.asset(
    partitions_def=documents,
    group_name=GROUP,
    kinds={"docling", "ray", "pdf"},
    output_required=False,
    description="Per-page Markdown of the PDF, from docling (offline layout + table engines by default), "
    "with `<!-- BOUNDARY -->` between elements and tables as Markdown. Stored under `extracted/`.",
)
def extracted_pages(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, ray_runner: RayRunner
) -> Iterator[dg.Output]:
    status = pipeline.status_store()
    document = _resolve_document(context, pipeline, status)
    if document is None:
        # Deleted between the sensor's listing and this run: clean up instead of failing.
        known = status.get(context.partition_key)
        assert known is not None
        removed = remove_document(pipeline.settings(), context.partition_key)
        status.mark_deleted(context.partition_key, known.processing_version, f"{known.source_key} is no longer in the inbox")
        context.log.warning(f"{known.source_key} is no longer in the inbox; removed its outputs {removed}")
        return
    tags = context.run.tags
    owner = tags.get(OWNER_TAG) or context.run.run_id
    claim = status.claim(
        document.document_id,
        document.version,
        owner,
        pipeline.settings().lease_seconds,
        reprocess=tags.get(TRIGGER_TAG) not in ("sensor", "cli"),
    )
    if not claim.granted:
        # Another run (the CLI, or a sensor run) has or had this exact version: do nothing, skip downstream.
        context.log.info(f"{document.name} version {document.version} not processed: {claim.reason}")
        return
    settings = pipeline.settings()
    started = time.perf_counter()
    with _failures_recorded(pipeline, "extract", document):
        page_ranges, _ = ray_runner.run(plan_extract, settings, document, document.source_key)
        parts = ray_runner.run_many(
            run_extract,
            [(settings, document, document.source_key, page_range) for page_range in page_ranges],
            max_calls=settings.extract_max_calls,
        )
        output, placement = ray_runner.run(merge_extract, settings, document, [part for part, _ in parts])
    output.seconds = time.perf_counter() - started  # wall time; task_seconds sums the parallel shards
    yield _record(context, pipeline, output, parts[0][1], None)


def _upstream(manifest: dict[str, Any]) -> StageOutput:
    return StageOutput.model_validate(manifest)


@dg.asset(
    partitions_def=documents,
    group_name=GROUP,
    kinds={"ray", "markdown"},
    description="Boundary-aware chunks (~1500 characters; tables and paragraphs never split) with page range, "
    "heading path and content hash. Stored under `chunks/`.",
)
def chunks(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, ray_runner: RayRunner, extracted_pages: dict
) -> dg.Output:
    return _submit(context, pipeline, ray_runner, run_chunk, "chunk", _upstream(extracted_pages))


@dg.asset(
    partitions_def=documents,
    group_name=GROUP,
    kinds={"ray", "python"},
    description="Chunks with PII (emails, phone numbers, SSNs) redacted to [REDACTED], named entities (people, "
    "organisations, medications) and key phrases. Stored under `enriched/`.",
)
def enriched_chunks(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, ray_runner: RayRunner, chunks: dict
) -> dg.Output:
    return _submit(context, pipeline, ray_runner, run_enrich, "enrich", _upstream(chunks))


@dg.asset(
    partitions_def=documents,
    group_name=GROUP,
    kinds={"ray", "pytorch"},
    description="One vector per enriched chunk (long chunks pooled over the model's token windows). "
    "Stored under `embeddings/`.",
)
def embeddings(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, ray_runner: RayRunner, enriched_chunks: dict
) -> dg.Output:
    return _submit(context, pipeline, ray_runner, run_embed, "embed", _upstream(enriched_chunks))


@dg.asset(
    partitions_def=documents,
    group_name=GROUP,
    kinds={"ray", "lancedb"},
    description="The document's rows in the vector index (text, metadata, vector; ids from document + chunk "
    "content), replacing any earlier version's rows. Searchable with hybrid full-text + vector search.",
)
def vector_index_entries(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, ray_runner: RayRunner, embeddings: dict
) -> dg.Output:
    upstream = _upstream(embeddings)
    output = _submit(context, pipeline, ray_runner, run_load, "load", upstream)
    pipeline.status_store().complete(upstream.document.document_id, upstream.document.version)
    return output


ingest_assets = [extracted_pages, chunks, enriched_chunks, embeddings, vector_index_entries]
