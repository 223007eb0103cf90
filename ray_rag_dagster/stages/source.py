"""The source PDF of a document version, as the inbox holds it now."""

from __future__ import annotations

from ray_rag_dagster.backends.object_store import ObjectStore
from ray_rag_dagster.errors import DocumentGone
from ray_rag_dagster.ids import version_of
from ray_rag_dagster.stages.manifest import DocumentRef


def require_current_source(store: ObjectStore, document: DocumentRef) -> None:
    """Raise :class:`DocumentGone` if the inbox no longer holds ``document``'s version (deleted or replaced)."""
    current = [info for info in store.list(document.source_key) if info.key == document.source_key]
    if not current:
        raise DocumentGone.deleted(document.name)
    if version_of(current[0].etag) != document.version:
        raise DocumentGone.replaced(document.name, document.version)
