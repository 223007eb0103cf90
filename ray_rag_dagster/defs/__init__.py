"""Dagster definitions: the five ingest assets, the inbox sensor, and the resources they share."""

from __future__ import annotations

import dagster as dg

from ray_rag_dagster.defs.assets import ingest_assets
from ray_rag_dagster.defs.checks import ingest_checks
from ray_rag_dagster.defs.ray_runner import RayRunner
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.defs.sensors import inbox_sensor, ingest_document_job
from ray_rag_dagster.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    # Plain settings: loading definitions (the webserver does) needs no secrets; assets resolve them lazily.
    settings = settings or Settings()
    return dg.Definitions(
        assets=ingest_assets,
        asset_checks=ingest_checks,
        jobs=[ingest_document_job],
        sensors=[inbox_sensor],
        resources={
            "pipeline": RagPipeline(home=str(settings.home)),
            # Explicit, so runs launched by the CLI (execute_in_process) also persist the small manifests that
            # later runs of a single downstream asset read.
            "io_manager": dg.FilesystemIOManager(base_dir=str(settings.dagster_home / "storage")),
            "ray_runner": RayRunner(
                address=settings.ray_address,
                num_cpus=settings.ray_num_cpus,
                object_store_mb=settings.ray_object_store_mb,
            ),
        },
        # Steps run in the run's own process against one Ray: the multiprocess executor would start a Ray
        # cluster per step. Parallelism comes from Ray, not from Dagster processes.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
