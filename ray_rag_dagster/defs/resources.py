"""Dagster resources: the pipeline's settings and the backends built from them."""


import os
from dataclasses import dataclass
from functools import lru_cache

import dagster as dg

from ray_rag_dagster.backends import build_object_store, build_status_store
from ray_rag_dagster.backends.object_store import ObjectStore
from ray_rag_dagster.backends.status_store import StatusStore
from ray_rag_dagster.settings import Settings, load_settings


@dataclass(frozen=True)
class _Backends:
    settings: Settings
    object_store: ObjectStore
    status_store: StatusStore


@lru_cache(maxsize=8)
def _backends(home: str | None, environment: frozenset[tuple[str, str]]) -> _Backends:
    # Keyed by the RAY_RAG_* environment too, so a changed configuration is never served stale. Built once
    # per configuration, not once per call: secrets are fetched once, and the local store's ETag cache
    # survives between sensor ticks instead of re-hashing the whole inbox every tick.
    del environment
    settings = load_settings(home=home) if home else load_settings()
    return _Backends(settings, build_object_store(settings), build_status_store(settings))


class RagPipeline(dg.ConfigurableResource):
    """Gives assets and sensors the settings (from ``RAY_RAG_*``) and the orchestrator-side backends.

    ``home`` overrides ``RAY_RAG_HOME`` for one deployment (tests use it).
    """

    home: str | None = None

    def _backends(self) -> _Backends:
        environment = frozenset((key, value) for key, value in os.environ.items() if key.startswith("RAY_RAG_"))
        return _backends(self.home, environment)

    def settings(self) -> Settings:
        return self._backends().settings

    def object_store(self) -> ObjectStore:
        return self._backends().object_store

    def status_store(self) -> StatusStore:
        return self._backends().status_store
