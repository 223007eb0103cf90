from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from ray_rag_dagster.backends import build_object_store, build_status_store, build_vector_index
from ray_rag_dagster.backends.object_store import LocalObjectStore, S3ObjectStore
from ray_rag_dagster.backends.sqlite_status_store import SqliteStatusStore
from ray_rag_dagster.backends.status_store import COMPLETED, DELETED
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.defs.sensors import inbox_sensor, remove_documents_job
from ray_rag_dagster.ids import OldStateError, document_id_for
from ray_rag_dagster.settings import Settings
from tests.backends.test_vector_index import records
from tests.standins.aws import moto_server


def tick(instance: dg.DagsterInstance, home: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"pipeline": RagPipeline(home=str(home))})
    result = inbox_sensor(context)
    # Apply the partition requests as the daemon would.
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(documents.name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(documents.name, key)
    return result


def requested_partitions(instance: dg.DagsterInstance, request: dg.RunRequest) -> list[str]:
    """The partitions one run request covers: its partition, or its range of the (ordered) partitions."""
    if request.partition_key is not None:
        return [request.partition_key]
    key_range = request.partition_key_range
    assert key_range is not None, f"a run request with no partition: {request}"
    keys = instance.get_dynamic_partitions(documents.name)
    return keys[keys.index(key_range.start) : keys.index(key_range.end) + 1]


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


def test_s3_inbox_paginates_sees_changes_and_deletions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_server() as endpoint:
        for name, value in {"OBJECT_STORE": "s3", "S3_BUCKET": "rag-inbox-test", "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(f"RAY_RAG_{name}", value)
        settings = Settings(home=tmp_path)
        store = build_object_store(settings)
        assert isinstance(store, S3ObjectStore)
        store.client.create_bucket(Bucket="rag-inbox-test")
        keys = [f"input/batch/protocol-{number:04d}.pdf" for number in range(1500)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: store.put_bytes(key, f"%PDF-1.4 {key}".encode()), keys))
        instance = dg.DagsterInstance.ephemeral()

        first = tick(instance, tmp_path, None)
        assert len(instance.get_dynamic_partitions(documents.name)) == 1500  # more than one S3 page of 1,000 keys
        # In batches of at most partitions_per_run documents, each document in exactly one of them.
        size = settings.partitions_per_run
        assert len(first.run_requests) == -(-1500 // size)
        batches = [requested_partitions(instance, request) for request in first.run_requests]
        assert all(1 <= len(batch) <= size for batch in batches)
        requested = [key for batch in batches for key in batch]
        assert sorted(requested) == sorted(document_id_for(key) for key in keys)
        assert len({request.run_key for request in first.run_requests}) == len(first.run_requests)

        store.put_bytes(keys[7], b"%PDF-1.4 changed")
        changed = tick(instance, tmp_path, first.cursor)
        [request] = changed.run_requests
        assert requested_partitions(instance, request) == [document_id_for(keys[7])]
        assert request.run_key not in {earlier.run_key for earlier in first.run_requests}

        # A processed document whose PDF is then deleted: outputs, vectors and partition go, status says so.
        gone = document_id_for(keys[3])
        store.put_json(f"extracted/{gone}/pages.json", {"pages": []})
        store.put_jsonl(f"chunks/{gone}/chunks.jsonl", [{"text": "x"}])
        index = build_vector_index(settings)
        index.replace_document(gone, records(gone, "v1", ["a chunk of the deleted protocol"]))
        store.client.delete_object(Bucket="rag-inbox-test", Key=keys[3])
        deleted = tick(instance, tmp_path, changed.cursor)
        # DELETED at once (a run still on it stops); its outputs and vectors go in a remove_documents run.
        assert build_status_store(settings).get(gone).status == DELETED
        assert gone not in instance.get_dynamic_partitions(documents.name)
        [removal] = deleted.run_requests
        assert removal.job_name == remove_documents_job.name
        assert removal.run_config["ops"]["remove_documents"]["config"]["document_ids"] == [gone]
        result = remove_documents_job.execute_in_process(
            run_config=removal.run_config, instance=instance, resources={"pipeline": RagPipeline(home=str(tmp_path))}
        )
        assert result.success
        assert store.list(f"extracted/{gone}/") == [] and store.list(f"chunks/{gone}/") == []
        assert index.count(gone) == 0
        assert tick(instance, tmp_path, deleted.cursor).run_requests == []


def test_a_burst_of_new_pdfs_is_requested_in_batches_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """30 new PDFs, N per run: one tick requests ⌈30/N⌉ runs over partition ranges, and no tick after it
    requests any of those versions again (a lost cursor gives the same run keys, which Dagster runs once)."""
    monkeypatch.setenv("RAY_RAG_PARTITIONS_PER_RUN", "7")
    settings = Settings(home=tmp_path)
    assert settings.partitions_per_run == 7
    inbox = settings.inbox_dir
    inbox.mkdir(parents=True)
    names = [f"protocol-{number:02d}.pdf" for number in range(30)]
    for name in names:
        (inbox / name).write_bytes(f"%PDF-1.4 {name}".encode())
    instance = dg.DagsterInstance.ephemeral()

    first = tick(instance, tmp_path, None)
    assert len(first.run_requests) == 5  # ⌈30 / 7⌉
    batches = [requested_partitions(instance, request) for request in first.run_requests]
    assert [len(batch) for batch in batches] == [7, 7, 7, 7, 2]
    assert sorted(key for batch in batches for key in batch) == sorted(document_id_for(f"input/{n}") for n in names)
    for request, batch in zip(first.run_requests, batches, strict=True):
        assert request.tags["ray_rag/trigger"] == "sensor"
        if len(batch) > 1:
            assert request.partition_key is None
            assert request.tags["dagster/asset_partition_range_start"] == batch[0]
            assert request.tags["dagster/asset_partition_range_end"] == batch[-1]
    assert len({request.run_key for request in first.run_requests}) == 5

    # The next tick: nothing new.
    second = tick(instance, tmp_path, first.cursor)
    assert second.run_requests == [] and second.dynamic_partitions_requests == []
    # A tick that lost its cursor asks for the same versions under the same run keys: deduplicated.
    replayed = tick(instance, tmp_path, None)
    assert [request.run_key for request in replayed.run_requests] == [request.run_key for request in first.run_requests]

    # One file changes: a run for it alone, under a new run key.
    (inbox / names[10]).write_bytes(b"%PDF-1.4 changed")
    changed = tick(instance, tmp_path, second.cursor)
    [request] = changed.run_requests
    assert requested_partitions(instance, request) == [document_id_for(f"input/{names[10]}")]
    assert request.run_key not in {earlier.run_key for earlier in first.run_requests}



def test_partition_keys_read_as_the_file_names(tmp_path: Path) -> None:
    """Odd file names and one name in two folders: readable partition keys, one per PDF, all requested."""
    settings = Settings(home=tmp_path)
    names = ["Protocol V3 (Lilly).pdf", "Étude clinique n°2.pdf", "📄.pdf", "site-a/protocol.pdf", "site-b/protocol.pdf"]
    for name in names:
        (settings.inbox_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (settings.inbox_dir / name).write_bytes(f"%PDF-1.4 {name}".encode())
    instance = dg.DagsterInstance.ephemeral()
    first = tick(instance, tmp_path, None)
    partitions = instance.get_dynamic_partitions(documents.name)
    assert sorted(key.rsplit("-", 1)[0] for key in partitions) == [
        "document", "etude-clinique-n2", "protocol", "protocol", "protocol-v3-lilly"]
    assert sorted(partitions) == sorted(document_id_for(f"input/{name}") for name in names)
    assert sorted(key for request in first.run_requests for key in requested_partitions(instance, request)) == sorted(
        partitions)


def test_state_with_old_ids_fails_the_tick_naming_reset(tmp_path: Path) -> None:
    """Partitions or status rows of the older ``doc_<12 hex>`` shape: the sensor adds nothing beside them."""
    settings = Settings(home=tmp_path)
    settings.inbox_dir.mkdir(parents=True)
    (settings.inbox_dir / "protocol.pdf").write_bytes(b"%PDF-1.4 protocol")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(documents.name, ["doc_0123456789ab"])
    with pytest.raises(OldStateError, match="Run `ray-rag reset`"):
        tick(instance, tmp_path, None)
    assert instance.get_dynamic_partitions(documents.name) == ["doc_0123456789ab"]

    SqliteStatusStore(settings.status_db).register("doc_ba9876543210", "v1", "input/protocol.pdf")
    with pytest.raises(OldStateError, match="'doc_ba9876543210'"):
        tick(dg.DagsterInstance.ephemeral(), tmp_path, None)


def test_partition_ranges_are_consecutive_and_bounded() -> None:
    from ray_rag_dagster.defs.partitions import partition_ranges

    ordered = list("abcdefghij")
    assert partition_ranges(ordered, set("abcdefghij"), 4) == [list("abcd"), list("efgh"), list("ij")]
    # A partition not wanted (already processed) ends a range: a range holds only wanted partitions.
    assert partition_ranges(ordered, set("abdefj"), 3) == [list("ab"), list("def"), ["j"]]
    assert partition_ranges(ordered, set(), 3) == []
