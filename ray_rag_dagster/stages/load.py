"""Load stage: enriched chunks + their vectors → the vector index, replacing the document's rows."""

from __future__ import annotations

import time
from collections import Counter

from ray_rag_dagster.backends import build_object_store, build_vector_index
from ray_rag_dagster.backends.vector_index import IndexRecord
from ray_rag_dagster.ids import chunk_id
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.embed import load_vectors
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.source import require_current_source


def run_load(settings: Settings, document: DocumentRef) -> StageOutput:
    """Read the vectors and the enriched chunks they were made from; replace the document's index rows."""
    started = time.perf_counter()
    store = build_object_store(settings)
    info = store.get_json(keys.vectors_info(document))
    chunks = store.get_jsonl(info["enriched_key"])
    vectors = load_vectors(store.get_bytes(keys.vectors(document)))
    if info["chunk_hashes"] != [chunk["content_hash"] for chunk in chunks] or len(vectors) != len(chunks):
        raise RuntimeError(f"{document.name}: embeddings do not match the enriched chunks; re-run embed")
    seen: Counter[str] = Counter()
    records = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        occurrence = seen[chunk["content_hash"]]
        seen[chunk["content_hash"]] += 1
        records.append(
            IndexRecord(
                id=chunk_id(document.document_id, chunk["content_hash"], occurrence),
                document_id=document.document_id,
                processing_version=document.version,
                source_key=document.source_key,
                chunk_index=chunk["chunk_index"],
                page_start=chunk["page_start"],
                page_end=chunk["page_end"],
                heading_path=" > ".join(chunk["heading_path"]),
                text=chunk["text"],
                content_hash=chunk["content_hash"],
                entities=chunk["entities"],
                key_phrases=chunk["key_phrases"],
                redactions=chunk["redactions"],
                embed_model=info["model"],
                vector=vector,
            )
        )
    # Last look at the inbox before the rows are swapped: a run that started on a version replaced since
    # must not write over the newer version's rows (its own run loads it, seconds later at the earliest).
    require_current_source(store, document)
    index = build_vector_index(settings)
    rows = index.replace_document(document.document_id, records)
    if settings.vector_index == "pinecone":
        index_name = f"{settings.pinecone_index}/{settings.pinecone_namespace}"
    else:
        index_name = settings.lancedb_table
    return StageOutput(
        stage="load",
        document=document,
        key=index_name,
        uri=f"{settings.vector_index}://{index_name}?document_id={document.document_id}",
        counts={"vectors": rows, "index_total": index.count()},
        details={"index": settings.vector_index},
        seconds=time.perf_counter() - started,
    )
