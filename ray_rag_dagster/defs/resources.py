"""Dagster resources: the pipeline's settings and the backends built from them."""


import dagster as dg

from ray_rag_dagster.backends import build_object_store, build_status_store
from ray_rag_dagster.backends.object_store import ObjectStore
from ray_rag_dagster.backends.status_store import StatusStore
from ray_rag_dagster.settings import Settings


class RagPipeline(dg.ConfigurableResource):
    """Gives assets and sensors the settings (from ``RAY_RAG_*``) and the orchestrator-side backends.

    ``home`` overrides ``RAY_RAG_HOME`` for one deployment (tests use it).
    """

    home: str | None = None

    def settings(self) -> Settings:
        return Settings(home=self.home) if self.home else Settings()

    def object_store(self) -> ObjectStore:
        return build_object_store(self.settings())

    def status_store(self) -> StatusStore:
        return build_status_store(self.settings())
