"""Enrich stage: redact PII, find entities and key phrases, chunk by chunk.

Everything downstream (embeddings, the vector index, search results, Pinecone metadata) reads this
stage's rows only, so every string field of a row is redacted here: the text by the enricher (and once
more here, whatever the backend), the chunk's other fields (the heading path above all: a heading can
hold a contact's e-mail) by :func:`redact_fields`, and an entity or key phrase that still holds a value
is dropped. Rows carry redaction counts by kind, never the values. The identifiers (document id,
version, content hash) are hex digests and pass unchanged.
"""

from __future__ import annotations

import time
from collections import Counter

from ray_rag_dagster.backends import build_enricher, build_object_store
from ray_rag_dagster.backends.enrich import redact_fields, redact_pii, without_pii
from ray_rag_dagster.costs import usd
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput

# Chunks per enricher call: small enough to keep an LLM request short, large enough to amortise overhead.
ENRICH_BATCH = 16
# Row fields that are ids derived from content (hex digests), not content: passed on as they are, so the
# embeddings and the index still join on them. ``text`` is the enricher's to redact.
_IDENTIFIER_FIELDS = frozenset({"document_id", "version", "content_hash"})


def redact_chunk_fields(chunk: dict) -> tuple[dict, dict[str, int]]:
    """The chunk with every string outside ``text`` and the identifiers redacted (heading path, ...).

    Returns the chunk (``text`` untouched: the enricher's job) and the redactions made, by kind.
    """
    fields = {key: value for key, value in chunk.items() if key != "text" and key not in _IDENTIFIER_FIELDS}
    redacted, counts = redact_fields(fields)
    return {**chunk, **redacted}, counts


def run_enrich(settings: Settings, document: DocumentRef) -> StageOutput:
    """Read chunks, write ``enriched/<document_id>/<version>/chunks.jsonl``: redacted text and annotations."""
    started = time.perf_counter()
    store = build_object_store(settings)
    enricher = build_enricher(settings)
    chunks = store.get_jsonl(keys.chunks(document))
    rows, redactions, entity_counts = [], Counter(), Counter()
    input_tokens = output_tokens = fallbacks = 0
    cost = 0.0
    for start in range(0, len(chunks), ENRICH_BATCH):
        batch = chunks[start : start + ENRICH_BATCH]
        for chunk, enrichment in zip(batch, enricher.enrich([chunk["text"] for chunk in batch]), strict=True):
            redactions.update(enrichment.redactions)
            input_tokens += enrichment.input_tokens
            output_tokens += enrichment.output_tokens
            fallbacks += enrichment.enricher == "local-fallback"
            cost += usd(settings.prices, enrichment.model or enricher.name, enrichment.input_tokens,
                        enrichment.output_tokens)
            redacted_chunk, field_redactions = redact_chunk_fields(chunk)
            text, text_redactions = redact_pii(enrichment.redacted_text)  # a no-op for the built-in enrichers
            field_redactions = dict(Counter(field_redactions) + Counter(text_redactions))
            # Entities and phrases come from redacted text; one that still holds a value is dropped, not
            # masked (a "name" that is half an e-mail address is no entity). Counted once, in the text.
            entities = {kind: without_pii(names) for kind, names in enrichment.entities.items()}
            entity_counts.update({kind: len(names) for kind, names in entities.items()})
            redactions.update(field_redactions)
            rows.append(
                {
                    **redacted_chunk,
                    "text": text,
                    "redactions": dict(Counter(enrichment.redactions) + Counter(field_redactions)),
                    "entities": entities,
                    "key_phrases": without_pii(enrichment.key_phrases),
                    "enricher": enrichment.enricher,
                }
            )
    key = keys.enriched(document)
    uri = store.put_jsonl(key, rows)
    return StageOutput(
        stage="enrich",
        document=document,
        key=key,
        uri=uri,
        counts={
            "chunks": len(rows),
            "redactions": sum(redactions.values()),
            **{f"redactions_{kind}": count for kind, count in sorted(redactions.items())},
            "entities": sum(entity_counts.values()),
            **{f"entities_{kind}": count for kind, count in sorted(entity_counts.items())},
            "tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "fallback_chunks": fallbacks,
            "cost_usd": cost,
        },
        details={"enricher": enricher.name},
        seconds=time.perf_counter() - started,
    )
