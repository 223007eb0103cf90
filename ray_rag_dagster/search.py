"""Search the index: embed the question with the configured embedder, fuse full-text and vector rankings.

No heavy import at module level: ``ray-rag search`` imports this module before it knows whether a running
server answers (then nothing else is needed) or it must load the index and the model itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

# A query is one short text: embedded on one thread (see build_embedder).
QUERY_THREADS = 1

if TYPE_CHECKING:
    from ray_rag_dagster.backends.vector_index import SearchHit
    from ray_rag_dagster.settings import Settings


def search_index(settings: Settings, question: str, k: int = 5) -> list[SearchHit]:
    from ray_rag_dagster.backends import build_embedder, build_vector_index

    index = build_vector_index(settings)
    if index.count() == 0:
        return []
    vector = build_embedder(settings, query_threads=QUERY_THREADS).embed_query(index.embedding_text(question))
    return index.search(question, vector, k)


def local_search(question: str, k: int) -> list[dict[str, Any]]:
    """Search in this process: the embedding model loads in a thread while LanceDB imports and opens the index
    (ONNX Runtime builds its session without holding the GIL, so the two overlap on two cores)."""
    from concurrent.futures import ThreadPoolExecutor

    from ray_rag_dagster.backends import build_embedder, build_vector_index
    from ray_rag_dagster.hits import hit_record
    from ray_rag_dagster.settings import load_settings

    settings = load_settings()
    if settings.vector_index == "lancedb" and not (settings.lancedb_dir / f"{settings.lancedb_table}.lance").exists():
        return []  # nothing indexed yet: no model to load
    with ThreadPoolExecutor(max_workers=1) as pool:
        embedder = pool.submit(build_embedder, settings, query_threads=QUERY_THREADS)
        index = build_vector_index(settings)
        hits = index.search(question, embedder.result().embed_query(index.embedding_text(question)), k)
    return [hit_record(hit, question, rank) for rank, hit in enumerate(hits, start=1)]


def answer_search(question: str, k: int, as_json: bool) -> None:
    """``ray-rag search``: a running ``ray-rag serve`` answers when there is one, else this process; the hits
    are printed as JSON or as a table."""
    from ray_rag_dagster.serve.client import search_via_server

    if search_via_server(question, k, as_json):
        return
    hits = local_search(question, k)
    if as_json:
        print(json.dumps(hits, indent=2, ensure_ascii=False, default=str))
        return
    from rich.console import Console

    from ray_rag_dagster.hits import print_hits

    print_hits(Console(), question, hits)
