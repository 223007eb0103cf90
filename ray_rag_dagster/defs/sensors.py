"""The inbox sensor: each new or changed PDF under ``input/`` becomes a partition and one run request.

The cursor remembers the version (ETag) last seen for each key, and the run key includes it, so an
identical re-upload requests nothing and a changed file requests exactly one run. A version that another
orchestrator (the CLI) already processed or is processing is not requested again. A PDF that disappears from
the inbox has its outputs and vectors removed, its status set to DELETED and its partition deleted.
"""


import json

import dagster as dg

from ray_rag_dagster.backends.status_store import PENDING
from ray_rag_dagster.defs.assets import TRIGGER_TAG, ingest_assets
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.ids import document_id_for, version_of
from ray_rag_dagster.stages.remove import remove_document

INBOX_PREFIX = "input/"

ingest_document_job = dg.define_asset_job(
    "ingest_document",
    selection=dg.AssetSelection.assets(*ingest_assets),
    description="All five stages for one document.",
)


@dg.sensor(
    job=ingest_document_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the inbox (the object store's input/ prefix) for new or changed PDFs.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, pipeline: RagPipeline) -> dg.SensorResult:
    store = pipeline.object_store()
    status = pipeline.status_store()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    known_partitions = set(context.instance.get_dynamic_partitions(documents.name))
    new_partitions: list[str] = []
    requests: list[dg.RunRequest] = []
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
        requests.append(
            dg.RunRequest(
                run_key=f"{document_id}:{version}",
                partition_key=document_id,
                tags={TRIGGER_TAG: "sensor", "ray_rag/source": info.key, "ray_rag/version": version},
            )
        )
    deleted_partitions = []
    for key in sorted(set(seen) - set(current)):
        document_id = document_id_for(key)
        row = status.get(document_id)
        removed = remove_document(pipeline.settings(), document_id)
        if row is not None:
            status.mark_deleted(document_id, row.processing_version, f"{key} was deleted from the inbox")
        if document_id in known_partitions:
            deleted_partitions.append(document_id)
        context.log.info(f"{key} deleted: removed {removed}")
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
