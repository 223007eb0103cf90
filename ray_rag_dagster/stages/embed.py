"""Embed stage: one vector per enriched chunk, in batches, from the configured embedder."""

from __future__ import annotations

import io
import time

import numpy as np

from ray_rag_dagster.backends import build_embedder, build_object_store
from ray_rag_dagster.costs import usd
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput


def load_vectors(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def run_embed(settings: Settings, document: DocumentRef) -> StageOutput:
    started = time.perf_counter()
    store = build_object_store(settings)
    embedder = build_embedder(settings)
    enriched_key = keys.enriched(document)
    chunks = store.get_jsonl(enriched_key)
    embeddings = embedder.embed_documents([chunk["text"] for chunk in chunks])
    buffer = io.BytesIO()
    np.save(buffer, embeddings.vectors.astype(np.float32), allow_pickle=False)
    vectors_key, info_key = keys.vectors(document), keys.vectors_info(document)
    store.put_bytes(vectors_key, buffer.getvalue())
    uri = store.put_json(
        info_key,
        {
            "document_id": document.document_id,
            "version": document.version,
            "model": embedder.name,
            "dimension": embedder.dimension,
            "enriched_key": enriched_key,
            "chunk_hashes": [chunk["content_hash"] for chunk in chunks],
            "tokens": embeddings.tokens,
        },
    )
    return StageOutput(
        stage="embed",
        document=document,
        key=info_key,
        uri=uri,
        counts={
            "vectors": int(embeddings.vectors.shape[0]),
            "dimension": embedder.dimension,
            "tokens": embeddings.tokens,
            "windows": embeddings.windows,
            "cost_usd": usd(settings.prices, embedder.name, embeddings.tokens),
        },
        details={"model": embedder.name},
        seconds=time.perf_counter() - started,
    )
