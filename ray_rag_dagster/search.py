"""Search the index: embed the question with the configured embedder, fuse full-text and vector rankings."""

from __future__ import annotations

from ray_rag_dagster.backends import build_embedder, build_vector_index
from ray_rag_dagster.backends.vector_index import SearchHit
from ray_rag_dagster.settings import Settings


def search_index(settings: Settings, question: str, k: int = 5) -> list[SearchHit]:
    index = build_vector_index(settings)
    if index.count() == 0:
        return []
    vector = build_embedder(settings).embed_query(question)
    return index.search(question, vector, k)
