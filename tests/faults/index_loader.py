"""What each of two loader processes runs (spawned: kept light, so they start in a second, not ten)."""

from __future__ import annotations

from pathlib import Path

from ray_rag_dagster.backends.vector_index import LanceDBIndex
from tests.backends.test_vector_index import DOC_A, DOC_B, records

__all__ = ["DOC_A", "DOC_B", "DRUGS", "load_at_the_barrier", "records"]

DRUGS = {DOC_A: "glargine", DOC_B: "sitagliptin"}


def load_at_the_barrier(path: str, document_id: str, count: int, barrier, results) -> None:
    """In its own process: open the index, wait for the other loader, then load one document."""
    try:
        index = LanceDBIndex(Path(path))
        drug = DRUGS[document_id]
        texts = [f"Chunk {number}: {drug} {number} mg once daily." for number in range(count)]
        rows = records(document_id, "v1", texts, seed=count)
        barrier.wait(timeout=120)
        results.put((document_id, "ok", index.replace_document(document_id, rows)))
    except BaseException as error:  # noqa: BLE001 - reported to the test, which fails on it
        results.put((document_id, "error", f"{type(error).__name__}: {error}"))
