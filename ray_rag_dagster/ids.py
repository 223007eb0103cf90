"""Stable identifiers: documents by their source key, versions and chunks by their content."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import PurePosixPath

SLUG_MAX_CHARS = 40
FALLBACK_SLUG = "document"
# [a-z0-9] words joined by single hyphens, then 8 hex: no quote, '#', '@', '/' or '_', so an id is safe in a
# filter expression, a Pinecone id prefix (``<doc>#<version>#<chunk>``) and an object-store prefix.
_DOCUMENT_ID = re.compile(rf"(?=.{{1,{SLUG_MAX_CHARS + 9}}}\Z)[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{{8}}\Z")


class OldStateError(RuntimeError):
    """The state holds document ids of an older shape (``doc_<12 hex>``); mixing shapes would index every
    document twice."""


def slug(name: str) -> str:
    """Lower-case ASCII words of ``name`` joined by hyphens, at most ``SLUG_MAX_CHARS`` (accents folded,
    anything else dropped); ``"document"`` when nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name.casefold()).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")
    return words[:SLUG_MAX_CHARS].rstrip("-") or FALLBACK_SLUG


def document_id_for(source_key: str) -> str:
    """``<slug of the file name>-<8 hex>``, e.g. ``protocol-v3-lilly-3f9a2c1b``: readable in the Dagster UI,
    and unique per source key (the hash is of the whole key: the same file name in two folders differs)."""
    digest = hashlib.sha256(source_key.encode()).hexdigest()[:8]
    return f"{slug(PurePosixPath(source_key).stem)}-{digest}"


def safe_document_id(document_id: str) -> str:
    """Refuse anything that is not a document id before it goes into a filter expression."""
    if not _DOCUMENT_ID.match(document_id):
        raise ValueError(f"not a document id: {document_id!r}")
    return document_id


def check_current_ids(document_ids: Iterable[str]) -> None:
    """Raise :class:`OldStateError`, naming the way out, if the state holds ids of an older shape."""
    old = sorted({document_id for document_id in document_ids if not _DOCUMENT_ID.match(document_id)})
    if old:
        raise OldStateError(
            f"The state (status store, Dagster partitions) holds {len(old)} document id(s) of an older shape "
            f"(e.g. {old[0]!r}); this version names documents <file-name>-<hash> and does not mix the two. "
            "Run `ray-rag reset`: it deletes the derived state and keeps the inbox PDFs; the next `ray-rag ingest` "
            "or `ray-rag dev` rebuilds it. A deployment: README, section \"Readable document ids\"."
        )


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def chunk_id(document_id: str, chunk_content_hash: str, occurrence: int = 0) -> str:
    """Same document + same chunk text → same id, so a re-load replaces rows instead of adding them.

    ``occurrence`` tells identical chunks of one document apart (a repeated boilerplate paragraph).
    """
    return hashlib.sha256(f"{document_id}:{chunk_content_hash}:{occurrence}".encode()).hexdigest()[:32]


def version_of(etag: str) -> str:
    """The processing version of a source object, from its ETag (an MD5 of the content for local files and
    single-part S3 uploads): a changed file is a new version, an identical re-upload the same one."""
    return etag.strip('"')[:16]
