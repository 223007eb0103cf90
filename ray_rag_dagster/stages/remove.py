"""Removing a document's outputs: all of them when its PDF leaves the inbox, or its superseded versions."""

from __future__ import annotations

from ray_rag_dagster.backends import build_object_store, build_vector_index
from ray_rag_dagster.ids import safe_document_id
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef


def remove_document(settings: Settings, document_id: str) -> dict[str, int]:
    """Delete everything the pipeline produced for ``document_id`` (every version); return how much went."""
    document_id = safe_document_id(document_id)
    store = build_object_store(settings)
    removed = {
        prefix.split("/", 1)[0]: store.delete_prefix(prefix) for prefix in keys.document_prefixes(document_id)
    }
    removed["vectors"] = build_vector_index(settings).delete_document(document_id)
    return removed


def remove_other_versions(settings: Settings, document: DocumentRef) -> int:
    """Delete the stage outputs and index rows of every version but ``document``'s (once it is COMPLETED)."""
    store = build_object_store(settings)
    keep = tuple(keys.version_prefixes(document))
    removed = 0
    for prefix in keys.document_prefixes(document.document_id):
        for info in store.list(prefix):
            if not info.key.startswith(keep):
                removed += store.delete_prefix(info.key)
    return removed + build_vector_index(settings).remove_other_versions(document.document_id, document.version)


def remove_version(settings: Settings, document: DocumentRef) -> int:
    """Delete the stage outputs of ``document``'s version (deleted or replaced while a run worked on it)."""
    store = build_object_store(settings)
    return sum(store.delete_prefix(prefix) for prefix in keys.version_prefixes(document))
