from __future__ import annotations

import dagster as dg

from ray_rag_dagster.defs import defs
from ray_rag_dagster.defs.partitions import documents

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
    assert sensor.job_name == "ingest_document"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
