"""The five stages as Dagster assets, one partition per document, computed in batch-sized runs.

The five assets (``extracted_pages`` → ``chunks`` → ``enriched_chunks`` → ``embeddings`` →
``vector_index_entries``) are the specs of one multi-asset, so that one run can:

- take many partitions (``BackfillPolicy.multi_run``: a backfill of 1,000 documents is ⌈1000/N⌉ runs),
- stream every document through the selected stages on Ray at once, stages of different documents
  overlapping (:func:`ray_rag_dagster.compute.flow.run_stages`),
- report one materialization per document and stage, with that document's metadata, as soon as it is done,
- and let one bad document fail alone: Dagster cannot mark a single partition of a multi-partition step
  as failed (dagster-io/dagster#17836), so the step records every good partition first and fails last,
  naming each failed document; Dagster then shows exactly those partitions as failed.

Selecting a single asset in the UI runs that stage only (the multi-asset can be subset); inputs are found
from the partition and the document's version (keys in :mod:`ray_rag_dagster.stages.keys`), so nothing
but metadata flows through Dagster.
"""


from collections.abc import Iterator
from typing import Any, Self

import dagster as dg

from ray_rag_dagster.backends.status_store import DELETED, StatusStore
from ray_rag_dagster.compute.flow import STAGES, StageResult, run_stages_in_background
from ray_rag_dagster.compute.workers import Placement
from ray_rag_dagster.defs.checks import CHECK_SPECS, evaluate_checks
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.remove import remove_document, remove_other_versions, remove_version
from ray_rag_dagster.stages.source import inbox_version

GROUP = "rag_ingest"
OWNER_TAG = "ray_rag/owner"  # set by the CLI, which claims documents before it launches their runs
TRIGGER_TAG = "ray_rag/trigger"  # "sensor" | "cli"; anything else (the UI, the shell) means "reprocess"
INTERRUPTED = "interrupted"  # metadata of the failure of a step that was interrupted
# Status-store count fields each stage reports (seconds, tokens and cost are cumulative totals).
STATUS_COUNTS = {"extract": ("pages",), "chunk": ("chunks",), "load": ("vectors",)}
TOTALS = ("seconds", "tokens", "cost_usd")

ASSET_OF_STAGE = {
    "extract": "extracted_pages",
    "chunk": "chunks",
    "enrich": "enriched_chunks",
    "embed": "embeddings",
    "load": "vector_index_entries",
}
STAGE_OF_ASSET = {asset: stage for stage, asset in ASSET_OF_STAGE.items()}
_DESCRIPTIONS = {
    "extract": "docling's DoclingDocument of the PDF (document.json) and its per-page Markdown, rendered by "
    "docling-core's serializers (offline layout + table engines by default). Stored under "
    "`extracted/<doc>/<version>/` (raw text: short lifecycle).",
    "chunk": "docling-core HybridChunker chunks sized to the embedder's token window (headings kept, table "
    "headers repeated, rows never cut) with page range, heading path and content hash. Stored under "
    "`chunks/<doc>/<version>/` (raw text).",
    "enrich": "Chunks with PII (emails, phone numbers, SSNs) redacted to [REDACTED], named entities (people, "
    "organisations, medications) and key phrases. Stored under `enriched/<doc>/<version>/`.",
    "embed": "One vector per enriched chunk (long chunks pooled over the model's token windows). "
    "Stored under `embeddings/<doc>/<version>/`.",
    "load": "The document's rows in the vector index (text, metadata, vector; ids from document + chunk "
    "content), replacing any earlier version's rows. Searchable with hybrid full-text + vector search.",
}
_KINDS = {
    "extract": {"docling", "ray", "pdf"},
    "chunk": {"ray", "markdown"},
    "enrich": {"ray", "python"},
    "embed": {"ray", "onnx"},
    "load": {"ray", "lancedb"},
}


def _specs() -> list[dg.AssetSpec]:
    specs = []
    for position, stage in enumerate(STAGES):
        specs.append(
            dg.AssetSpec(
                ASSET_OF_STAGE[stage],
                deps=[ASSET_OF_STAGE[STAGES[position - 1]]] if position else [],
                partitions_def=documents,
                group_name=GROUP,
                kinds=_KINDS[stage],
                description=_DESCRIPTIONS[stage],
                skippable=True,  # materializations are reported per partition, as each document finishes
            )
        )
    return specs


def stage_metadata(output: StageOutput, placement: Placement | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "document_id": dg.MetadataValue.text(output.document.document_id),
        "source": dg.MetadataValue.text(output.document.source_key),
        "processing_version": dg.MetadataValue.text(output.document.version),
        "output": dg.MetadataValue.url(output.uri),
        "seconds": dg.MetadataValue.float(round(output.seconds, 3)),
        "pipeline_seconds": dg.MetadataValue.float(round(output.totals.get("seconds", 0.0), 3)),
        "pipeline_tokens": dg.MetadataValue.int(int(output.totals.get("tokens", 0))),
        "pipeline_usd": dg.MetadataValue.float(round(output.totals.get("cost_usd", 0.0), 6)),
    }
    if placement is not None:
        metadata["ray_node"] = dg.MetadataValue.text(f"{placement.node_id[:12]} ({placement.host}, pid {placement.pid})")
    for name, value in output.counts.items():
        if name == "cost_usd":
            metadata["estimated_usd"] = dg.MetadataValue.float(float(value))
        elif float(value).is_integer():
            metadata[name] = dg.MetadataValue.int(int(value))
        else:
            metadata[name] = dg.MetadataValue.float(float(value))
    for name, value in output.details.items():
        metadata[name] = dg.MetadataValue.text(value)
    metadata.setdefault("estimated_usd", dg.MetadataValue.float(0.0))
    return metadata


def resolve_documents(
    context: dg.AssetExecutionContext, pipeline: RagPipeline, status: StatusStore
) -> tuple[list[DocumentRef], list[str]]:
    """The run's documents at their current version in the inbox; and the partitions whose PDF is gone."""
    store = pipeline.object_store()
    found, gone = [], []
    for document_id in context.partition_keys:
        known = status.get(document_id)
        if known is None:
            raise dg.Failure(description=f"{document_id}: unknown document (no status row); add it through the inbox")
        version = inbox_version(store, known.source_key)
        if version is None:
            gone.append(document_id)
            continue
        assert document_id_for(known.source_key) == document_id
        status.register(document_id, version, known.source_key)
        found.append(DocumentRef(document_id=document_id, version=version, source_key=known.source_key))
    return found, gone


class LeaseHeartbeat:
    """Renews the leases of the run's unfinished documents every ``lease / 5`` seconds while it works, so a
    live run keeps long documents and a dead one's leases lapse within ``lease_seconds``."""

    def __init__(
        self, status: StatusStore, owner: str, lease_seconds: int, documents: list[DocumentRef], finished: set[str]
    ) -> None:
        import threading

        self.status, self.owner, self.lease_seconds = status, owner, lease_seconds
        self.documents, self.finished = documents, finished
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.lease_seconds / 5):
            for document in list(self.documents):
                if document.document_id not in self.finished:
                    self.status.renew(document.document_id, document.version, self.owner, self.lease_seconds)

    def __enter__(self) -> Self:
        if self.documents:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


class _Totals:
    """Running seconds/tokens/cost per document version across the stages of this run."""

    def __init__(self, status: StatusStore) -> None:
        self.status = status
        self.by_document: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, output: StageOutput) -> None:
        document = output.document
        key = (document.document_id, document.version)
        if key not in self.by_document:
            row = self.status.get(document.document_id, document.version)
            known = row.counts if row and output.stage != "extract" else {}
            self.by_document[key] = {name: float(known.get(name) or 0.0) for name in TOTALS}
        totals = self.by_document[key]
        this_stage = {"seconds": output.seconds, **output.counts}
        for name in TOTALS:
            totals[name] += float(this_stage.get(name, 0.0))
        output.totals = dict(totals)
        counts = {name: output.counts[name] for name in STATUS_COUNTS.get(output.stage, ()) if name in output.counts}
        # docling's partial success is never silent: the failed pages or components go into the status detail.
        failed = output.details.get("conversion_errors")
        note = f"docling converted the document partly: {failed}" if failed else None
        self.status.record_stage(document.document_id, document.version, output.stage, note=note, **totals, **counts)


def _claim_documents(
    context: dg.AssetExecutionContext, settings: Settings, status: StatusStore, candidates: list[DocumentRef]
) -> list[DocumentRef]:
    tags = context.run.tags
    owner = tags.get(OWNER_TAG) or context.run.run_id
    reprocess = tags.get(TRIGGER_TAG) not in ("sensor", "cli")
    claimed = []
    for document in candidates:
        claim = status.claim(document.document_id, document.version, owner, settings.lease_seconds, reprocess=reprocess)
        if claim.granted:
            claimed.append(document)
        else:
            # Another run (the CLI, or a sensor run) has or had this exact version: nothing to do here.
            context.log.info(f"{document.name} version {document.version} not processed: {claim.reason}")
    return claimed


@dg.multi_asset(
    name="ingest",
    specs=_specs(),
    check_specs=CHECK_SPECS,
    can_subset=True,
    partitions_def=documents,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=Settings().partitions_per_run),
    # Whole-step retries for what the flow could not ride out (the cluster unreachable, the run's process
    # interrupted); documents that failed on bad input are not retried (Failure(allow_retries=False)).
    retry_policy=dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL),
    description="The ingest pipeline: each selected stage for each document of the run, streamed on Ray.",
)
def ingest(context: dg.AssetExecutionContext, pipeline: RagPipeline) -> Iterator[Any]:
    settings = pipeline.settings()
    status = pipeline.status_store()
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    stages = [stage for stage in STAGES if ASSET_OF_STAGE[stage] in selected]
    candidates, gone = resolve_documents(context, pipeline, status)
    for document_id in gone:
        # Deleted between the sensor's listing and this run: clean up instead of failing.
        known = status.get(document_id)
        assert known is not None
        removed = remove_document(settings, document_id)
        status.mark_deleted(document_id, known.processing_version, f"{known.source_key} is no longer in the inbox")
        context.log.warning(f"{known.source_key} is no longer in the inbox; removed its outputs {removed}")
    # A run that (re)builds documents from the PDF claims them; a run of later stages only works on what
    # is there.
    working = _claim_documents(context, settings, status, candidates) if "extract" in stages else candidates

    store = pipeline.object_store()

    def still_wanted(document: DocumentRef, stage: str) -> str | None:
        row = status.get(document.document_id, document.version)
        if row is not None and row.status == DELETED:
            return f"{document.name} was deleted"
        if inbox_version(store, document.source_key) != document.version:
            # Replaced: the newer version's own run indexes it; this one must not load over it.
            return f"{document.name} was replaced or deleted (version {document.version} is gone)"
        return None

    totals = _Totals(status)
    failures: list[StageResult] = []
    finished: set[str] = set()
    owner = context.run.tags.get(OWNER_TAG) or context.run.run_id
    claimed = working if "extract" in stages else []

    def release_unfinished() -> None:
        # Give the claims back at once, so a retry or a re-ingest need not wait for the lease.
        for document in claimed:
            if document.document_id not in finished:
                status.release(document.document_id, document.version, owner, "run step ended early")

    try:
        with LeaseHeartbeat(status, owner, settings.lease_seconds, claimed, finished):
            yield from _stream(context, settings, status, working, stages, still_wanted, totals, failures, finished,
                               owner if claimed else None)
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as interrupt:
        release_unfinished()
        # Dagster turns an interrupt of a step that has a retry policy into a retry (15 s later): Ctrl-C of
        # `ray-rag ingest` or a cancel must end the step instead.
        raise dg.Failure(
            description="the run was interrupted; its unfinished documents were released",
            metadata={INTERRUPTED: True},
            allow_retries=False,
        ) from interrupt
    except BaseException:
        release_unfinished()  # the step itself broke (the cluster unreachable, ...)
        raise
    if failures:
        reasons = "; ".join(result.error or result.document.name for result in failures)
        raise dg.Failure(
            description=f"{len(failures)} of {len(context.partition_keys)} documents failed: {reasons}",
            metadata={"failed_documents": ", ".join(result.document.document_id for result in failures)},
            # Retry the step only for transient failures; bad input fails the same way every time.
            allow_retries=any(result.transient for result in failures),
        )


def _stream(
    context: dg.AssetExecutionContext,
    settings: Settings,
    status: StatusStore,
    working: list[DocumentRef],
    stages: list[str],
    still_wanted: Any,
    totals: _Totals,
    failures: list[StageResult],
    finished: set[str],
    owner: str | None,
) -> Iterator[Any]:
    """Materializations and check evaluations per document and stage, as the flow reports them."""
    last_stage = stages[-1] if stages else None
    for result in run_stages_in_background(settings, working, stages, before_stage=still_wanted):
        document = result.document
        if result.status == "ok":
            assert result.output is not None
            totals.add(result.output)
            asset = ASSET_OF_STAGE[result.stage]
            yield dg.AssetMaterialization(
                asset_key=asset,
                partition=document.document_id,
                metadata=stage_metadata(result.output, result.placement),
            )
            yield from evaluate_checks(context, settings, asset, result.output)
            if result.stage == "load":
                if status.complete(document.document_id, document.version, owner):
                    remove_other_versions(settings, document)
                else:
                    # Deleted (or taken over) while this run worked: the delete wins; undo the load.
                    row = status.get(document.document_id, document.version)
                    if row is not None and row.status == DELETED:
                        remove_document(settings, document.document_id)
                    context.log.warning(f"{document.name}: not completed by this run ({row.status if row else '?'})")
            if result.stage == last_stage:
                finished.add(document.document_id)
            # No log line per stage: each is one more event in Dagster's storage (the materialization and
            # its metadata already say it), and on a batch run they cost as much as the materializations.
        elif result.status == "gone":
            finished.add(document.document_id)
            # What this run wrote for the version is garbage now (a removal run may already have been):
            # a deleted document loses everything, a replaced one this version's outputs.
            row = status.get(document.document_id, document.version)
            if row is not None and row.status == DELETED:
                remove_document(settings, document.document_id)
            else:
                remove_version(settings, document)
            context.log.warning(f"{document.name}: stopped at {result.stage}: {result.error}")
        elif (row := status.get(document.document_id, document.version)) is not None and row.status == DELETED:
            # Failed because its PDF was deleted under it (its outputs removed mid-stage): the delete wins.
            finished.add(document.document_id)
            remove_document(settings, document.document_id)
            context.log.warning(f"{document.name}: deleted while at {result.stage} ({result.error})")
        elif (gone := still_wanted(document, result.stage)) is not None:
            # Failed because its version was replaced under it (the newer run removed this version's outputs
            # mid-stage): the newer version wins, this one is gone, not FAILED.
            finished.add(document.document_id)
            remove_version(settings, document)
            context.log.warning(f"{gone}; stopped at {result.stage} ({result.error})")
        else:
            finished.add(document.document_id)
            status.fail(document.document_id, document.version, result.stage, result.error or "failed")
            failures.append(result)
            context.log.error(result.error or f"{document.name}: {result.stage} failed")


ingest_assets = [ingest]
