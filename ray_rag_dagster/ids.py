"""Stable identifiers: documents by their source key, versions and chunks by their content."""

from __future__ import annotations

import hashlib
import re

_DOCUMENT_ID = re.compile(r"^doc_[0-9a-f]{12}$")


def document_id_for(source_key: str) -> str:
    """``doc_<12 hex>``: the MD5 of the source key (as the seed does), short enough to read."""
    return "doc_" + hashlib.md5(source_key.encode()).hexdigest()[:12]


def safe_document_id(document_id: str) -> str:
    """Refuse anything that is not a document id before it goes into a filter expression."""
    if not _DOCUMENT_ID.match(document_id):
        raise ValueError(f"not a document id: {document_id!r}")
    return document_id


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
