from __future__ import annotations

from pathlib import Path

import dagster as dg

from ray_rag_dagster.backends.object_store import LocalObjectStore
from ray_rag_dagster.backends.status_store import COMPLETED, SqliteStatusStore
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.defs.sensors import inbox_sensor
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.settings import Settings


def tick(instance: dg.DagsterInstance, home: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"pipeline": RagPipeline(home=str(home))})
    result = inbox_sensor(context)
    # Apply the partition requests as the daemon would.
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(documents.name, list(request.partition_keys))
    return result


def test_new_same_and_changed_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    inbox = settings.inbox_dir
    inbox.mkdir(parents=True)
    instance = dg.DagsterInstance.ephemeral()

    (inbox / "protocol.pdf").write_bytes(b"%PDF-1.4 first version")
    (inbox / "notes.txt").write_text("not a pdf: ignored")
    first = tick(instance, tmp_path, None)
    document_id = document_id_for("input/protocol.pdf")
    assert [request.partition_key for request in first.run_requests] == [document_id]
    assert instance.get_dynamic_partitions(documents.name) == [document_id]
    assert first.run_requests[0].tags["ray_rag/trigger"] == "sensor"

    again = tick(instance, tmp_path, first.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []

    (inbox / "protocol.pdf").write_bytes(b"%PDF-1.4 second version")
    changed = tick(instance, tmp_path, again.cursor)
    assert [request.partition_key for request in changed.run_requests] == [document_id]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
    assert changed.dynamic_partitions_requests == []  # the partition exists already


def test_version_processed_elsewhere_is_not_requested(tmp_path: Path) -> None:
    """The CLI claimed and finished this version before the sensor saw the file."""
    settings = Settings(home=tmp_path)
    store = LocalObjectStore(settings.objects_dir)
    store.put_bytes("input/done.pdf", b"%PDF-1.4 done")
    status = SqliteStatusStore(settings.status_db)
    document_id = document_id_for("input/done.pdf")
    version = store.list("input/")[0].etag[:16]
    status.register(document_id, version, "input/done.pdf")
    status.claim(document_id, version, "cli-test", 60, reprocess=False)
    in_progress = tick(dg.DagsterInstance.ephemeral(), tmp_path, None)
    assert in_progress.run_requests == []
    status.complete(document_id, version)
    assert status.get(document_id).status == COMPLETED
    assert tick(dg.DagsterInstance.ephemeral(), tmp_path, None).run_requests == []
