from __future__ import annotations

import dagster as dg

from ray_rag_dagster.defs import defs
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.settings import Settings

STAGES = ["extracted_pages", "chunks", "enriched_chunks", "embeddings", "vector_index_entries"]


def test_definitions_load_with_five_partitioned_assets_in_lineage() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(STAGES)
    for upstream, downstream in zip(STAGES, STAGES[1:], strict=False):
        parents = {key.to_user_string() for key in graph.get(dg.AssetKey(downstream)).parent_keys}
        assert parents == {upstream}
    for stage in STAGES:
        node = graph.get(dg.AssetKey(stage))
        assert node.partitions_def == documents
        assert node.group_name == "rag_ingest"
        assert "ray" in node.kinds


def test_sensor_targets_the_ingest_job() -> None:
    sensor = defs.resolve_sensor_def("inbox_sensor")
    assert {target.job_name for target in sensor.targets} == {"ingest_documents", "remove_documents_job"}
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_the_five_assets_are_one_multi_asset_over_batches_of_partitions() -> None:
    graph = defs.resolve_asset_graph()
    [ingest] = {graph.get(dg.AssetKey(stage)).assets_def for stage in STAGES}
    assert ingest.node_def.name == "ingest"
    assert ingest.can_subset
    assert ingest.backfill_policy is not None
    assert ingest.backfill_policy.max_partitions_per_run == Settings().partitions_per_run
    job = defs.resolve_job_def("ingest_documents")
    assert job.partitions_def == documents
    assert [node.name for node in job.graph.node_defs] == ["ingest"]  # one step per run
