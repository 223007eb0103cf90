"""Dagster definitions: the five ingest assets (one multi-asset), the inbox sensor, and the resource they share."""

from __future__ import annotations

import dagster as dg

from ray_rag_dagster.defs.assets import ingest_assets
from ray_rag_dagster.defs.resources import RagPipeline
from ray_rag_dagster.defs.sensors import inbox_sensor, ingest_documents_job, remove_documents_job
from ray_rag_dagster.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    # Plain settings: loading definitions (the webserver does) needs no secrets; assets resolve them lazily.
    settings = settings or Settings()
    return dg.Definitions(
        assets=ingest_assets,
        jobs=[ingest_documents_job, remove_documents_job],
        sensors=[inbox_sensor],
        resources={
            "pipeline": RagPipeline(home=str(settings.home)),
        },
        # One step per run, in the run's own process, driving the shared Ray cluster: parallelism comes from
        # Ray (documents and stages streamed over the warm workers), not from Dagster processes.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
