"""The source PDF of a document version, as the inbox holds it now."""

from __future__ import annotations

from ray_rag_dagster.backends.object_store import ObjectStore
from ray_rag_dagster.errors import DocumentGone
from ray_rag_dagster.ids import version_of
from ray_rag_dagster.stages.manifest import DocumentRef


def inbox_version(store: ObjectStore, source_key: str) -> str | None:
    """The version of the PDF the inbox holds at ``source_key`` now; None when it is not there."""
    current = store.info(source_key)  # one lookup: listing the inbox would cost O(inbox) per check
    return version_of(current.etag) if current else None


def require_current_source(store: ObjectStore, document: DocumentRef) -> None:
    """Raise :class:`DocumentGone` if the inbox no longer holds ``document``'s version (deleted or replaced)."""
    version = inbox_version(store, document.source_key)
    if version is None:
        raise DocumentGone.deleted(document.name)
    if version != document.version:
        raise DocumentGone.replaced(document.name, document.version)
