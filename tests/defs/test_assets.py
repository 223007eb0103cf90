"""The ingest multi-asset over a batch: one sensor tick, one run over a partition range, one corrupt PDF.

As the daemon would run it: the sensor sees four new PDFs and requests one run over their partition range;
the run streams them through the five stages on the session's shared Ray. The corrupt PDF fails alone: the
others are COMPLETED and materialized (per partition, with their checks), the step fails last naming the
corrupt one, and Dagster shows exactly that partition as failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from ray_rag_dagster.backends import build_status_store, build_vector_index
from ray_rag_dagster.defs import build_definitions
from ray_rag_dagster.defs.assets import ASSET_OF_STAGE
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.defs.sensors import inbox_sensor
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.settings import Settings
from tests.conftest import PDFS

pytestmark = pytest.mark.slow

GOOD = ["2305.03393v1-pg9.pdf", "right_to_left_01.pdf", "table_mislabeled_as_picture.pdf"]  # one page each
CORRUPT = "corrupt.pdf"
ASSETS = list(ASSET_OF_STAGE.values())


@dataclass
class Batch:
    settings: Settings
    instance: dg.DagsterInstance
    request: dg.RunRequest
    result: dg.ExecuteInProcessResult
    ids: dict[str, str]  # file name -> document id


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    home = tmp_path_factory.mktemp("assets")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_RAG_HOME", str(home))
        settings = Settings()
        inbox = settings.inbox_dir
        inbox.mkdir(parents=True)
        for name in GOOD:
            (inbox / name).write_bytes((PDFS / "docling" / name).read_bytes())
        (inbox / CORRUPT).write_bytes((PDFS / "docling" / "normal_4pages.pdf").read_bytes()[:3000])
        ids = {name: document_id_for(f"input/{name}") for name in [*GOOD, CORRUPT]}
        with dg.DagsterInstance.ephemeral() as instance:
            context = dg.build_sensor_context(instance=instance, resources={"pipeline": RagPipeline(home=str(home))})
            tick = inbox_sensor(context)
            for request in tick.dynamic_partitions_requests:
                instance.add_dynamic_partitions(documents.name, list(request.partition_keys))
            [request] = tick.run_requests  # four documents, one run
            job = build_definitions(settings).resolve_job_def("ingest_documents")
            result = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
            yield Batch(settings, instance, request, result, ids)


def test_one_run_over_the_partition_range(batch: Batch) -> None:
    key_range = batch.request.partition_key_range
    assert key_range is not None
    keys = batch.instance.get_dynamic_partitions(documents.name)
    assert sorted(keys[keys.index(key_range.start) : keys.index(key_range.end) + 1]) == sorted(batch.ids.values())
    [run] = batch.instance.get_runs()
    assert run.run_id == batch.result.run_id
    assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (
        key_range.start, key_range.end)


def test_the_corrupt_pdf_fails_alone_with_its_reason(batch: Batch) -> None:
    status = build_status_store(batch.settings)
    for name, document_id in batch.ids.items():
        row = status.get(document_id)
        assert row is not None
        if name == CORRUPT:
            assert row.status == "FAILED"
            assert row.error is not None and row.error.startswith(f"{CORRUPT}: corrupt PDF"), row.error
        else:
            assert row.status == "COMPLETED", (name, row.error)
            assert row.counts["vectors"] == row.counts["chunks"] > 0
            assert build_vector_index(batch.settings).count(document_id) == row.counts["vectors"]
    assert build_vector_index(batch.settings).count(batch.ids[CORRUPT]) == 0


def test_the_run_fails_last_naming_the_corrupt_document(batch: Batch) -> None:
    assert not batch.result.success
    [failure] = [event for event in batch.result.all_events if event.is_step_failure]
    data = failure.step_failure_data.user_failure_data
    assert data is not None
    assert data.description.startswith("1 of 4 documents failed: ")
    assert f"{CORRUPT}: corrupt PDF" in data.description
    assert data.metadata["failed_documents"].value == batch.ids[CORRUPT]
    # The failure came after every good document's materializations.
    events = batch.result.all_events
    last_materialization = max(index for index, event in enumerate(events) if event.is_step_materialization)
    assert events.index(failure) > last_materialization


def test_every_good_partition_is_materialized_with_its_checks(batch: Batch) -> None:
    good = {batch.ids[name] for name in GOOD}
    for asset in ASSETS:
        materialized = [event.partition for event in batch.result.asset_materializations_for_node("ingest")
                        if event.asset_key == dg.AssetKey(asset)]
        assert sorted(materialized) == sorted(good), asset
    evaluations = batch.result.get_asset_check_evaluations()
    by_check: dict[str, set[str]] = {}
    for evaluation in evaluations:
        by_check.setdefault(evaluation.check_name, set()).add(evaluation.partition)
    assert by_check == {name: good for name in ("tables_not_split", "no_pii_left", "every_chunk_embedded", "retrieval_quality")}
    assert all(evaluation.passed for evaluation in evaluations), [
        (e.check_name, e.partition, e.description) for e in evaluations if not e.passed]


def test_dagster_shows_the_corrupt_partition_failed_and_the_others_materialized(batch: Batch) -> None:
    good = {batch.ids[name] for name in GOOD}
    for asset in ASSETS:
        cached = get_and_update_asset_status_cache_value(batch.instance, dg.AssetKey(asset), documents)
        assert cached is not None
        materialized = set(cached.deserialize_materialized_partition_subsets(documents).get_partition_keys())
        failed = set(cached.deserialize_failed_partition_subsets(documents).get_partition_keys())
        assert (materialized, failed) == (good, {batch.ids[CORRUPT]}), asset
