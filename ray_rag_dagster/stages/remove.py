"""Removing a document: its stage outputs and its index rows, when its PDF leaves the inbox."""

from __future__ import annotations

from ray_rag_dagster.backends import build_object_store, build_vector_index
from ray_rag_dagster.ids import safe_document_id
from ray_rag_dagster.settings import Settings

OUTPUT_PREFIXES = ("extracted", "chunks", "enriched", "embeddings")


def remove_document(settings: Settings, document_id: str) -> dict[str, int]:
    """Delete everything the pipeline produced for ``document_id``; return how much went."""
    document_id = safe_document_id(document_id)
    store = build_object_store(settings)
    removed = {prefix: store.delete_prefix(f"{prefix}/{document_id}/") for prefix in OUTPUT_PREFIXES}
    removed["vectors"] = build_vector_index(settings).delete_document(document_id)
    return removed
