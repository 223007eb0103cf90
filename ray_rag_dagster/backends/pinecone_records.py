"""The vectors a Pinecone load sends: ids, flat metadata within Pinecone's limits, size-bounded upserts.

Metadata schema (one flat object per vector; Pinecone accepts only strings, numbers, booleans and lists of
strings, and returns numbers as floats; empty lists are left out, search gives them back as ``[]``):

==================== ============== ==========================================================================
key                  type           value
==================== ============== ==========================================================================
document_id          string         ``<file-name slug>-<8 hex>``, e.g. ``protocol-v3-lilly-3f9a2c1b``
processing_version   string         the source PDF's version (content hash)
document_version     string         ``<document_id>@<processing_version>``: what search filters on, so only a
                                    document's completed version is served
source_key           string         object-store key of the PDF, e.g. ``input/protocol.pdf``
chunk_index          number         position of the chunk in the document
page_start/page_end  number         page range of the chunk (1-based)
heading_path         string         ``"Section > Subsection"``
text                 string         the redacted chunk text, truncated (UTF-8 safe) if the metadata is too big
text_truncated       boolean        true when ``text`` was cut to fit the 40 KiB limit, else false
content_hash         string         hash of the chunk text
people               string list    entities by kind (the enricher's kinds: people, organizations,
organizations                       medications). Any other kind ``k`` is stored as ``entities_k``.
medications
key_phrases          string list    key phrases of the chunk
redacted_<kind>      number         PII redactions of that kind in the chunk, e.g. ``redacted_email: 2``
embed_model          string         the embedding model
metadata_truncated   boolean        only present when even an empty text did not fit and the entity and
                                    key-phrase lists were dropped
==================== ============== ==========================================================================
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Mapping
from typing import Any

from ray_rag_dagster.backends.vector_index import IndexRecord

MAX_VECTORS_PER_UPSERT = 1000
MAX_UPSERT_BYTES = 2 * 1024 * 1024
# Headroom under the 2 MiB cap for the request envelope and for the client's encoder (orjson) writing a few
# values differently from the stdlib encoder used to measure here.
UPSERT_BYTES_BUDGET = MAX_UPSERT_BYTES - 64 * 1024
MAX_METADATA_BYTES = 40 * 1024
METADATA_BYTES_BUDGET = MAX_METADATA_BYTES - 1024
MAX_IN_VALUES = 10_000  # values in one ``$in`` metadata filter
ENTITY_KINDS = ("people", "organizations", "medications")
REDACTION_PREFIX = "redacted_"
OTHER_ENTITY_PREFIX = "entities_"


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON, as the client sends it (UTF-8, no ASCII escaping)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def document_version(document_id: str, version: str) -> str:
    return f"{document_id}@{version}"


def served_filters(versions: Mapping[str, str] | None) -> list[dict[str, Any] | None]:
    """Query filters that pass only each document's completed version (``versions``: document → version), one
    per 10,000 documents (Pinecone's limit on ``$in`` values); ``[None]`` (no filter) when ``versions`` is None."""
    if versions is None:
        return [None]
    served = sorted(document_version(document, version) for document, version in versions.items())
    return [{"document_version": {"$in": served[start : start + MAX_IN_VALUES]}}
            for start in range(0, len(served), MAX_IN_VALUES)]


def _entity_key(kind: str) -> str:
    return kind if kind in ENTITY_KINDS else f"{OTHER_ENTITY_PREFIX}{kind}"


def record_metadata(record: IndexRecord) -> dict[str, Any]:
    """The record's metadata in Pinecone's flat shape, within the 40 KiB limit (see the module docstring)."""
    metadata: dict[str, Any] = {
        "document_id": record.document_id,
        "processing_version": record.processing_version,
        "document_version": document_version(record.document_id, record.processing_version),
        "source_key": record.source_key,
        "chunk_index": record.chunk_index,
        "page_start": record.page_start,
        "page_end": record.page_end,
        "heading_path": record.heading_path,
        "text": record.text,
        "text_truncated": False,
        "content_hash": record.content_hash,
        "embed_model": record.embed_model,
    }
    if record.key_phrases:
        metadata["key_phrases"] = [str(phrase) for phrase in record.key_phrases]
    for kind, names in record.entities.items():
        if names:
            metadata[_entity_key(kind)] = [str(name) for name in names]
    for kind, count in record.redactions.items():
        metadata[f"{REDACTION_PREFIX}{kind}"] = int(count)
    return _fit_metadata(metadata)


def _fit_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    if _json_size(metadata) <= METADATA_BYTES_BUDGET:
        return metadata
    text = metadata["text"]
    truncated = {**metadata, "text": "", "text_truncated": True}
    # Bytes left for the text, measured as encoded JSON (quotes and newlines are escaped, so longer than UTF-8).
    room = METADATA_BYTES_BUDGET - _json_size(truncated)
    if room >= 0:
        # The longest prefix whose encoding fits; a str prefix never splits a character, so it stays valid UTF-8.
        length = bisect.bisect_left(range(len(text) + 1), True, key=lambda n: _json_size(text[:n]) - 2 > room) - 1
        return {**truncated, "text": text[:length]}
    # Even without text it does not fit: drop the lists rather than fail the upsert.
    bare = {key: value for key, value in truncated.items() if not isinstance(value, list)}
    bare["heading_path"] = bare["heading_path"][: METADATA_BYTES_BUDGET // 8]
    return {**bare, "metadata_truncated": True}


def entities_from(metadata: dict[str, Any]) -> dict[str, list[str]]:
    entities = {kind: list(metadata.get(kind) or []) for kind in ENTITY_KINDS}
    for key, value in metadata.items():
        if key.startswith(OTHER_ENTITY_PREFIX):
            entities[key.removeprefix(OTHER_ENTITY_PREFIX)] = list(value)
    return entities


def upsert_batches(vectors: list[dict[str, Any]], namespace: str) -> Iterator[list[dict[str, Any]]]:
    """Consecutive batches of at most 1000 vectors whose upsert body stays under the byte budget."""
    envelope = _json_size({"vectors": [], "namespace": namespace})
    batch: list[dict[str, Any]] = []
    size = envelope
    for vector in vectors:
        item = _json_size(vector) + 1  # and its comma
        if batch and (len(batch) == MAX_VECTORS_PER_UPSERT or size + item > UPSERT_BYTES_BUDGET):
            yield batch
            batch, size = [], envelope
        batch.append(vector)
        size += item
    if batch:
        yield batch
