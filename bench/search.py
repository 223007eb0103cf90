"""5b. Vector search latency of the project's LanceDBIndex (hybrid: full text + vectors, fused) at 10k and
100k chunks of synthetic records: random unit vectors, text sampled from protocol sentences."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CDISC_PDF, LILLY_PDF, Stopwatch, percentile, ratio, scratch_dir, sentences_of

DIMENSION = 384
RECORDS_PER_DOCUMENT = 10_000


def _records(
    document_number: int, count: int, sentences: list[str], rng: random.Random, vectors: np.ndarray
) -> list[Any]:
    from ray_rag_dagster.backends.vector_index import IndexRecord
    from ray_rag_dagster.ids import content_hash

    document_id = f"doc_{document_number:012x}"
    records = []
    for index in range(count):
        text = " ".join(rng.sample(sentences, rng.randint(4, 10)))
        records.append(
            IndexRecord(
                id=f"{document_id}-{index}",
                document_id=document_id,
                processing_version="v1",
                source_key=f"input/synthetic-{document_number}.pdf",
                chunk_index=index,
                page_start=1 + index // 3,
                page_end=1 + index // 3,
                heading_path="Synthetic > Section",
                text=text,
                content_hash=content_hash(text),
                entities={"people": [], "organizations": [], "medications": []},
                key_phrases=[],
                redactions={},
                embed_model="synthetic",
                vector=vectors[index],
            )
        )
    return records


def _unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def run(quick: bool) -> dict[str, Any]:
    from ray_rag_dagster.backends.vector_index import LanceDBIndex

    sentences = sentences_of(CDISC_PDF) + sentences_of(LILLY_PDF)
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    sizes = [1_000, 5_000] if quick else [10_000, 100_000]
    queries = 10 if quick else 60
    per_document = 1_000 if quick else RECORDS_PER_DOCUMENT
    results: list[dict[str, Any]] = []
    with scratch_dir("search") as folder:
        index = LanceDBIndex(Path(folder) / "lancedb", "chunks")
        loaded = 0
        build_seconds = 0.0
        for size in sizes:
            watch = Stopwatch()
            while loaded < size:
                document_number = loaded // per_document
                vectors = _unit_vectors(np_rng, per_document)
                records = _records(document_number, per_document, sentences, rng, vectors)
                index.replace_document(f"doc_{document_number:012x}", records)
                loaded += per_document
            build_seconds += watch.seconds
            assert index.count() == size
            questions = [" ".join(rng.choice(sentences).split()[:8]) for _ in range(queries)]
            query_vectors = _unit_vectors(np_rng, queries)
            for question, vector in zip(questions[:3], query_vectors[:3], strict=True):
                index.search(question, vector, 5)  # warm: open the table, load the FTS index
            latencies = []
            for question, vector in zip(questions, query_vectors, strict=True):
                started = time.perf_counter()
                hits = index.search(question, vector, 5)
                latencies.append((time.perf_counter() - started) * 1000)
                assert len(hits) == 5
            results.append(
                {
                    "chunks": size,
                    "queries": queries,
                    "p50_ms": round(percentile(latencies, 0.50), 1),
                    "p95_ms": round(percentile(latencies, 0.95), 1),
                    "build_seconds_cumulative": round(build_seconds, 1),
                }
            )
    return {
        "sizes": results,
        "p50_growth": ratio(results[-1]["p50_ms"], results[0]["p50_ms"]),
        "size_growth": ratio(results[-1]["chunks"], results[0]["chunks"]),
    }
