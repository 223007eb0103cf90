"""The inbox sensor: new or changed PDFs under ``input/`` become partitions, requested in batches.

Each tick registers the versions it sees, adds their partitions, and requests runs over *ranges* of
partitions, at most ``partitions_per_run`` documents each (new partitions are appended, so the documents of
one tick form one contiguous range; a changed file's older partition gets a range of its own). Fifty PDFs
dropped at once are two runs, not fifty. The cursor remembers the version (ETag) last seen for each key, and
the run key holds the versions, so an identical re-upload requests nothing and a changed file is requested
once. A version whose run died (its lease expired: live runs renew theirs) is requested again. A version that another orchestrator (the CLI) already processed or is processing is not requested
again. A PDF that disappears from the inbox has its outputs and vectors removed, its status set to DELETED
and its partition deleted. A state that holds document ids of an older shape fails the tick, naming
``ray-rag reset``.
"""


import hashlib
import json
import time

import dagster as dg

from ray_rag_dagster.backends.status_store import IN_PROGRESS, PENDING
from ray_rag_dagster.defs.assets import TRIGGER_TAG, ingest_assets
from ray_rag_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, documents, partition_ranges
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.ids import check_current_ids, document_id_for, version_of
from ray_rag_dagster.stages.remove import remove_document

INBOX_PREFIX = "input/"

ingest_documents_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets(*ingest_assets),
    partitions_def=documents,
    description="All five stages for a batch of documents (a range of partitions).",
)


def batch_request(keys: list[str], versions: dict[str, str], tags: dict[str, str]) -> dg.RunRequest:
    """One run over consecutive partitions; the run key names the versions, so it is requested once."""
    digest = hashlib.sha256(json.dumps([[key, versions[key]] for key in keys]).encode()).hexdigest()[:16]
    run_key = f"{keys[0]}..{keys[-1]}:{digest}"
    if len(keys) == 1:
        return dg.RunRequest(run_key=run_key, partition_key=keys[0], tags=tags)
    # A range is given by these tags (RunRequest.partition_key_range reads them), as a backfill does.
    return dg.RunRequest(run_key=run_key, tags={**tags, RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]})


class RemoveDocumentsConfig(dg.Config):
    document_ids: list[str]


@dg.op(description="Delete every output and index row of documents whose PDF left the inbox.")
def remove_documents(context: dg.OpExecutionContext, config: RemoveDocumentsConfig, pipeline: RagPipeline) -> None:
    for document_id in config.document_ids:
        removed = remove_document(pipeline.settings(), document_id)  # deletion errors fail the run, visibly
        context.log.info(f"{document_id}: removed {removed}")


@dg.job(description="Removes deleted documents' outputs and vectors (requested by the inbox sensor).")
def remove_documents_job() -> None:
    remove_documents()


@dg.sensor(
    jobs=[ingest_documents_job, remove_documents_job],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the inbox (the object store's input/ prefix) for new or changed PDFs.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, pipeline: RagPipeline) -> dg.SensorResult:
    store = pipeline.object_store()
    status = pipeline.status_store()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    known_partitions = set(context.instance.get_dynamic_partitions(documents.name))
    rows = status.documents()
    check_current_ids([*known_partitions, *(row.document_id for row in rows)])  # old ids: refuse, name the reset
    new_partitions: list[str] = []
    wanted: dict[str, str] = {}  # document id -> version to process
    current: dict[str, str] = {}
    for info in store.list(INBOX_PREFIX):
        if not info.key.lower().endswith(".pdf"):
            continue
        version = version_of(info.etag)
        current[info.key] = version
        if seen.get(info.key) == version:
            continue
        document_id = document_id_for(info.key)
        row = status.register(document_id, version, info.key)
        if document_id not in known_partitions:
            new_partitions.append(document_id)
            known_partitions.add(document_id)
        if row.status != PENDING:
            context.log.info(f"{info.key} version {version} is already {row.status}; no run requested")
            continue
        wanted[document_id] = version
    # Reap: a version whose run died holds an expired lease; request it again under a new run key.
    now = time.time()
    for row in rows:
        if (row.status == IN_PROGRESS and row.lease_expires_at is not None and row.lease_expires_at < now
                and current.get(row.source_key) == row.processing_version and row.document_id not in wanted):
            wanted[row.document_id] = f"{row.processing_version}@{row.lease_expires_at:.0f}"
            context.log.warning(f"{row.source_key}: the lease of {row.owner} expired; requesting it again")
    deleted_partitions = []
    removals: list[str] = []
    for key in sorted(set(seen) - set(current)):
        document_id = document_id_for(key)
        row = status.get(document_id)
        if row is not None:
            # DELETED first: a run still working on the document stops and undoes its load.
            status.mark_deleted(document_id, row.processing_version, f"{key} was deleted from the inbox")
        removals.append(document_id)
        if document_id in known_partitions:
            deleted_partitions.append(document_id)
        context.log.info(f"{key} deleted: its outputs and vectors are removed by a remove_documents run")
    ordered = [key for key in context.instance.get_dynamic_partitions(documents.name) if key not in deleted_partitions]
    ordered += [key for key in new_partitions if key not in ordered]
    size = pipeline.settings().partitions_per_run
    requests = [
        batch_request(keys, wanted, {TRIGGER_TAG: "sensor"}).with_replaced_attrs(job_name=ingest_documents_job.name)
        for keys in partition_ranges(ordered, set(wanted), size)
    ]
    if removals:
        requests.append(
            dg.RunRequest(
                run_key=f"remove:{hashlib.sha256(json.dumps(sorted(removals) + [now]).encode()).hexdigest()[:16]}",
                job_name=remove_documents_job.name,
                run_config={"ops": {"remove_documents": {"config": {"document_ids": sorted(removals)}}}},
            )
        )
    partition_requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if new_partitions:
        partition_requests.append(documents.build_add_request(new_partitions))
    if deleted_partitions:
        partition_requests.append(documents.build_delete_request(deleted_partitions))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps(current, sort_keys=True),
    )
