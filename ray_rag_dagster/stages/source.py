"""The source PDF of a document version, as the inbox holds it now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ray_rag_dagster.backends import build_object_store
from ray_rag_dagster.backends.object_store import ObjectStore
from ray_rag_dagster.errors import DocumentGone
from ray_rag_dagster.ids import version_of
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages.manifest import DocumentRef
from ray_rag_dagster.stages.remove import remove_version

Output = TypeVar("Output")


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


def run_while_current(stage: Callable[..., Output], settings: Settings, document: DocumentRef, *args: Any) -> Output:
    """``stage(settings, document, *args)``, whose outputs stay only if the PDF is still this version after
    it wrote them; otherwise they are removed and :class:`DocumentGone` is raised.

    A delete or a newer version may be handled (its removal run done) while the stage runs on a worker: the
    stage's write would then outlive the removal. The inbox changes before any removal starts, so a check
    after the write always sees it.
    """
    output = stage(settings, document, *args)
    try:
        require_current_source(build_object_store(settings), document)
    except DocumentGone:
        remove_version(settings, document)
        raise
    return output
