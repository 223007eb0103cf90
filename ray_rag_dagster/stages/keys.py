"""Object-store keys of every stage output, derived from the document id and its version.

Keys carry the version (the PDF's content hash), so two runs on two versions of one file never read or
overwrite each other's intermediate outputs, and every downstream stage finds its input from the
partition (document id) and version alone: nothing but these two values has to flow through Dagster.
"""

from __future__ import annotations

from ray_rag_dagster.ids import safe_document_id
from ray_rag_dagster.stages.manifest import DocumentRef

# Stage output prefixes, in pipeline order. `extracted/` and `chunks/` hold raw (unredacted) text.
OUTPUT_PREFIXES = ("extracted", "chunks", "enriched", "embeddings")


def _folder(prefix: str, document: DocumentRef) -> str:
    return f"{prefix}/{safe_document_id(document.document_id)}/{document.version}"


def extracted_pages(document: DocumentRef) -> str:
    return f"{_folder('extracted', document)}/pages.json"


def extracted_document(document: DocumentRef) -> str:
    """docling's ``DoclingDocument`` of the whole PDF, as JSON: what the chunker reads."""
    return f"{_folder('extracted', document)}/document.json"


def extracted_markdown(document: DocumentRef) -> str:
    return f"{_folder('extracted', document)}/document.md"


def extract_parts_prefix(document: DocumentRef) -> str:
    return f"{_folder('extracted', document)}/parts/"


def extract_part(document: DocumentRef, page_range: tuple[int, int]) -> str:
    return f"{extract_parts_prefix(document)}{page_range[0]:05d}-{page_range[1]:05d}.json"


def chunks(document: DocumentRef) -> str:
    return f"{_folder('chunks', document)}/chunks.jsonl"


def enriched(document: DocumentRef) -> str:
    return f"{_folder('enriched', document)}/chunks.jsonl"


def vectors(document: DocumentRef) -> str:
    """Row i is the vector of enriched chunk i."""
    return f"{_folder('embeddings', document)}/vectors.npy"


def vectors_info(document: DocumentRef) -> str:
    """Model, dimension, chunk hashes and tokens of the vectors."""
    return f"{_folder('embeddings', document)}/vectors.json"


def document_prefixes(document_id: str) -> list[str]:
    """Every prefix holding outputs of any version of the document."""
    document_id = safe_document_id(document_id)
    return [f"{prefix}/{document_id}/" for prefix in OUTPUT_PREFIXES]


def version_prefixes(document: DocumentRef) -> list[str]:
    return [f"{_folder(prefix, document)}/" for prefix in OUTPUT_PREFIXES]
