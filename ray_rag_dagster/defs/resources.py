"""Dagster resources: the pipeline's settings and the backends built from them."""


import os
from functools import lru_cache

import dagster as dg

from ray_rag_dagster.backends import build_object_store, build_status_store
from ray_rag_dagster.backends.object_store import ObjectStore
from ray_rag_dagster.backends.status_store import StatusStore
from ray_rag_dagster.settings import Settings, load_settings


@lru_cache(maxsize=8)
def _settings(home: str | None, environment: frozenset[tuple[str, str]]) -> Settings:
    # Keyed by the RAY_RAG_* environment too, so a changed configuration is never served stale; secrets
    # are fetched once per configuration, not once per asset.
    del environment
    return load_settings(home=home) if home else load_settings()


class RagPipeline(dg.ConfigurableResource):
    """Gives assets and sensors the settings (from ``RAY_RAG_*``) and the orchestrator-side backends.

    ``home`` overrides ``RAY_RAG_HOME`` for one deployment (tests use it).
    """

    home: str | None = None

    def settings(self) -> Settings:
        environment = frozenset((key, value) for key, value in os.environ.items() if key.startswith("RAY_RAG_"))
        return _settings(self.home, environment)

    def object_store(self) -> ObjectStore:
        return build_object_store(self.settings())

    def status_store(self) -> StatusStore:
        return build_status_store(self.settings())
