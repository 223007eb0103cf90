"""Enrich stage: redact PII, find entities and key phrases, chunk by chunk.

Everything downstream (embeddings, the vector index) reads the redacted text only, so PII found here
never reaches the index.
"""

from __future__ import annotations

import time
from collections import Counter

from ray_rag_dagster.backends import build_enricher, build_object_store
from ray_rag_dagster.costs import usd
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput

# Chunks per enricher call: small enough to keep an LLM request short, large enough to amortise overhead.
ENRICH_BATCH = 16


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
            entity_counts.update({kind: len(names) for kind, names in enrichment.entities.items()})
            rows.append(
                {
                    **chunk,
                    "text": enrichment.redacted_text,
                    "redactions": enrichment.redactions,
                    "entities": enrichment.entities,
                    "key_phrases": enrichment.key_phrases,
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
