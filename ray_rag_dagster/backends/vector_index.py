"""The searchable index: chunk text, full metadata and vectors.

Search is hybrid: clinical questions are keyword-heavy (doses, thresholds, lab names), where BM25 finds the
passage that dense vectors miss, so full-text and vector rankings are fused by score.
Row ids come from document id + chunk content: re-loading a document replaces its rows, never duplicates
them, and rows of its earlier versions are deleted in the same commit.

Writes are safe under concurrency: every write to the local LanceDB folder holds one file lock (any
process on the machine: loads of concurrent runs queue instead of racing), creating the table happens under
that lock (the first two loads into an empty index both keep their rows), a commit conflict from any
other writer is retried with backoff, and the full-text index is updated incrementally (``optimize``
adds the new rows to it) instead of being rebuilt over the whole table for every document.

At scale: from :data:`VECTOR_INDEX_MIN_ROWS` rows on the vector leg uses an IVF-PQ index instead of
comparing every vector (its deltas merged after every write, trained again as the table outgrows it), a search
reads only the columns a hit needs, and old versions' files are removed after :data:`KEEP_VERSIONS` instead of
a week. A question that names one document by its study code searches that document (``document_scope``).
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ray_rag_dagster.backends.document_scope import DocumentScope
from ray_rag_dagster.backends.ranking import boost, fuse, normalise_terms, search_text, without_words
from ray_rag_dagster.ids import safe_document_id

WRITE_ATTEMPTS = 8
# Every write optimizes (the new rows join the full-text and vector indices): rows not indexed yet are searched
# flat, and a flat full-text search over 4,500 waiting rows took 240 ms of a query at 100k chunks. Optimizing
# also compacts the table's files, which rewrites the table (loading grows quadratically: 100k chunks in
# 500-chunk documents took 30 min on a loaded machine), and keeps old versions' files: for a week by default,
# which held 32 GB at 100k chunks. Kept only as long as a reader may use one (a search opens the latest
# version; every write holds the folder lock).
KEEP_VERSIONS = timedelta(minutes=10)

CANDIDATES_PER_HIT = 4
MIN_CANDIDATES = 20
# From this many rows on, the vector leg searches an IVF-PQ index (candidates re-ranked by the exact distance)
# instead of comparing every vector: at 100k chunks (loaded machine) flat took p50 200 ms, the index 14 ms with
# 97 % of flat's top 20 (refine 10; refine 5: 92 %). Below it, flat is exact and cheap.
VECTOR_INDEX_MIN_ROWS = 20_000
VECTOR_INDEX_PROBES = 20
VECTOR_INDEX_REFINE = 10
# Each optimize adds the new rows to the vector index as one more delta, and a query searches every delta (after
# 4 loads at 100k chunks: p50 37 / p95 62 ms in process): every write merges them into one (0.14 s at 100k; the
# same query p50 28 / p95 45 ms), keeping the trained centroids. Training again (72 s at 106k rows) waits until
# the table has outgrown its partitions: on average more than this many rows each (trained at ~4k).
PARTITION_ROWS = 4096
RETRAIN_PARTITION_ROWS = 2 * PARTITION_ROWS
# What a hit needs: not the vector nor the full-text column (a 100k-row search spent its time copying them).
HIT_COLUMNS = ["id", "document_id", "processing_version", "source_key", "chunk_index", "page_start", "page_end",
               "heading_path", "text", "entities", "key_phrases", "redactions", "embed_model"]


@dataclass
class IndexRecord:
    id: str
    document_id: str
    processing_version: str
    source_key: str
    chunk_index: int
    page_start: int
    page_end: int
    heading_path: str
    text: str
    content_hash: str
    entities: dict[str, list[str]]
    key_phrases: list[str]
    redactions: dict[str, int]
    embed_model: str
    vector: np.ndarray


@dataclass
class SearchHit:
    id: str
    document_id: str
    source_key: str
    page_start: int
    page_end: int
    heading_path: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


class VectorIndex(abc.ABC):
    @abc.abstractmethod
    def replace_document(self, document_id: str, records: list[IndexRecord]) -> int:
        """Write ``records`` (one version of the document) as its rows; return how many that version has.

        Rows of other versions may stay until :meth:`remove_other_versions` (an index that cannot swap them
        atomically serves only each document's completed version instead)."""

    def remove_other_versions(self, document_id: str, keep_version: str) -> int:
        """Delete the document's rows of every version but ``keep_version`` (called once it is COMPLETED);
        return how many went. Here there are none: a replace swaps the rows in one transaction."""
        return 0

    @abc.abstractmethod
    def delete_document(self, document_id: str) -> int: ...

    @abc.abstractmethod
    def search(self, query: str, vector: np.ndarray, k: int) -> list[SearchHit]: ...

    def embedding_text(self, query: str) -> str:
        """What of ``query`` the embedder should read for :meth:`search` (here: all of it)."""
        return query

    @abc.abstractmethod
    def count(self, document_id: str | None = None) -> int: ...


def _schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("document_id", pa.string()),
            ("processing_version", pa.string()),
            ("source_key", pa.string()),
            ("chunk_index", pa.int32()),
            ("page_start", pa.int32()),
            ("page_end", pa.int32()),
            ("heading_path", pa.string()),
            ("text", pa.string()),
            # What the full-text index reads (ranking.search_text): the heading path, then the text, so "inclusion
            # criterion: age" matches a chunk under "Inclusion Criteria".
            ("search_text", pa.string()),
            ("content_hash", pa.string()),
            ("entities", pa.string()),  # JSON: {"people": [...], "organizations": [...], "medications": [...]}
            ("key_phrases", pa.list_(pa.string())),
            ("redactions", pa.string()),  # JSON: {"email": 1, ...}
            ("embed_model", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


class EmbedderMismatch(ValueError):
    """Vectors of one embedder offered to an index built with another."""


class LanceDBIndex(VectorIndex):
    """LanceDB embedded in a local folder, with a native full-text index on the chunk text."""

    def __init__(
        self, path: Path, table_name: str = "chunks", text_weight: float = 0.85,
        vector_index_min_rows: int = VECTOR_INDEX_MIN_ROWS,
    ) -> None:
        import lancedb

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.table_name = table_name
        self.text_weight = text_weight
        self.vector_index_min_rows = vector_index_min_rows
        self.db = lancedb.connect(str(self.path))
        self._scope = DocumentScope()
        self._text_leg = ThreadPoolExecutor(max_workers=1, thread_name_prefix="full-text-leg")  # a thread on first use

    def _table(self):  # type: ignore[no-untyped-def]
        # One call, not list_tables() then open_table(): a search opens the table twice (embedding_text, search),
        # 0.7 ms each instead of 1.1.
        try:
            return self.db.open_table(self.table_name)
        except ValueError as error:
            if "not found" in str(error):
                return None
            raise

    def _write(self, operation: Callable[[], int]) -> int:
        """Run a write under the folder's lock, retrying commit conflicts (another writer) with backoff."""
        from filelock import FileLock
        from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

        def conflict(error: BaseException) -> bool:
            message = str(error).lower()
            return "commit conflict" in message or "retryable" in message

        attempt = retry(
            retry=retry_if_exception(conflict),
            stop=stop_after_attempt(WRITE_ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            reraise=True,
        )(operation)
        with FileLock(str(self.path / f".{self.table_name}.write.lock")):
            return attempt()

    def replace_document(self, document_id: str, records: list[IndexRecord]) -> int:
        document_id = safe_document_id(document_id)
        if not records:
            self.delete_document(document_id)
            return 0
        dimension = int(records[0].vector.shape[0])
        rows = [
            {
                **{name: getattr(record, name) for name in (
                    "id", "document_id", "processing_version", "source_key", "chunk_index", "page_start",
                    "page_end", "heading_path", "text", "content_hash", "key_phrases", "embed_model")},
                "search_text": search_text(record.heading_path, record.text),
                "entities": json.dumps(record.entities),
                "redactions": json.dumps(record.redactions),
                "vector": record.vector.astype(np.float32).tolist(),
            }
            for record in records
        ]
        data = pa.Table.from_pylist(rows, schema=_schema(dimension))

        def write() -> int:
            from lancedb.index import FTS

            table = self._table()
            if table is None:
                table = self.db.create_table(self.table_name, data=data)
                table.create_index("search_text", config=FTS())
                return 0
            self._require_dimension(table, dimension, f"{document_id}'s vectors ({records[0].embed_model}) are")
            (
                table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(f"document_id = '{document_id}'")
                .execute(data)
            )
            indices = {tuple(index.columns): index for index in table.list_indices()}
            text_index = indices.get(("search_text",))
            if text_index is None:
                table.create_index("search_text", config=FTS())
            else:
                # Adds the new rows to the existing full-text and vector indices; drops the files of versions
                # no reader needs any more.
                table.optimize(cleanup_older_than=KEEP_VERSIONS)
            vector_index = indices.get(("vector",))
            if vector_index is None:
                if table.count_rows() >= self.vector_index_min_rows:
                    self._create_vector_index(table)
            else:
                self._merge_or_retrain(table, vector_index.name)
            return 0

        self._write(write)
        return self.count(document_id)

    def _merge_or_retrain(self, table: Any, name: str) -> None:
        """One vector index segment after every write: the deltas merged (lance's ``optimize_indices``, which
        LanceDB does not expose), or the index trained again once its partitions hold too many rows."""
        import lance

        # Statistics without the centroids (lance's coming default; warns and copies them all otherwise).
        os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
        dataset = lance.dataset(str(self.path / f"{self.table_name}.lance"))
        stats = dataset.stats.index_stats(name)
        if dataset.count_rows() > RETRAIN_PARTITION_ROWS * stats["indices"][0]["num_partitions"]:
            self._create_vector_index(table)
        elif stats["num_indices"] > 1:
            dataset.optimize.optimize_indices(num_indices_to_merge=stats["num_indices"], index_names=[name])

    @staticmethod
    def _create_vector_index(table: Any) -> None:
        """IVF-PQ over the cosine distance, trained on the rows there are; later writes add their rows to it
        (``optimize``, then merged). Partitions of ≈ 4k rows; 8 dimensions per PQ code."""
        from lancedb.index import IvfPq

        rows = table.count_rows()
        dimension = table.schema.field("vector").type.list_size
        table.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=max(1, rows // PARTITION_ROWS),
                                                  num_sub_vectors=max(1, dimension // 8)))

    def delete_document(self, document_id: str) -> int:
        document_id = safe_document_id(document_id)

        def delete() -> int:
            table = self._table()
            if table is None:
                return 0
            before = table.count_rows(f"document_id = '{document_id}'")
            if before:
                table.delete(f"document_id = '{document_id}'")
            return before

        return self._write(delete)

    def count(self, document_id: str | None = None) -> int:
        table = self._table()
        if table is None:
            return 0
        if document_id is None:
            return table.count_rows()
        return table.count_rows(f"document_id = '{safe_document_id(document_id)}'")

    def _require_dimension(self, table: Any, dimension: int, offered: str) -> None:
        """Refuse vectors of another embedder than the index's (the embedder setting changed since the
        documents were indexed): mixed vectors would make every similarity meaningless. ``offered`` names
        the vectors, with their verb ("the query's vector is")."""
        indexed = table.schema.field("vector").type.list_size
        if indexed != dimension:
            [row] = table.search().select(["embed_model"]).limit(1).to_list() or [{"embed_model": "?"}]
            raise EmbedderMismatch(
                f"the index in {self.path} holds {indexed}-d vectors made by {row['embed_model']}, but {offered} "
                f"{dimension}-d: the embedder setting (RAY_RAG_EMBEDDER) changed since it was built; set it back, "
                "or rebuild the index: `ray-rag reset`, then ingest again"
            )

    def _fused(
        self, table: Any, query: str, vector: np.ndarray, candidates: int, where: str | None = None
    ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        """Fused scores of the two legs' candidates (with their heading and phrase boosts), and their rows, by id."""
        text_search = table.search(normalise_terms(query), query_type="fts", fts_columns="search_text")
        # With a vector index: probe the nearest partitions, then re-rank by the exact distance (no index:
        # both are ignored and every vector is compared).
        vector_search = (table.search(vector.astype(np.float32)).distance_type("cosine")
                         .nprobes(VECTOR_INDEX_PROBES).refine_factor(VECTOR_INDEX_REFINE))
        if where is not None:
            text_search, vector_search = text_search.where(where, prefilter=True), vector_search.where(where, prefilter=True)
        # The two legs run at once (LanceDB answers each in its own runtime, without the GIL).
        text_leg = self._text_leg.submit(
            lambda: text_search.select([*HIT_COLUMNS, "_score"]).limit(candidates).to_list()
        )
        vector_rows = vector_search.select([*HIT_COLUMNS, "_distance"]).limit(candidates).to_list()
        text_rows = text_leg.result()
        scores = fuse(
            {row["id"]: float(row["_score"]) for row in text_rows},
            {row["id"]: 1.0 - float(row["_distance"]) for row in vector_rows},
            self.text_weight,
        )
        by_id = {row["id"]: row for row in [*vector_rows, *text_rows]}
        return boost(scores, by_id, query), by_id

    def embedding_text(self, query: str) -> str:
        """The query without the name of the document it names (see document_scope): to the embedder a study
        code is a few meaningless word pieces (3 protocols: all questions R@5 / MRR@10 0.938 / 0.865 -> 0.946 /
        0.868, written ones 0.721 / 0.526 -> 0.744 / 0.567)."""
        table = self._table()
        return query if table is None else without_words(query, self._scope.named(table, query)[1])

    def search(self, query: str, vector: np.ndarray, k: int) -> list[SearchHit]:
        table = self._table()
        if table is None:
            return []
        # Each leg returns more candidates than asked for, so fusion can lift a passage that only one
        # leg ranks highly.
        candidates = max(k * CANDIDATES_PER_HIT, MIN_CANDIDATES)
        self._require_dimension(table, int(vector.shape[0]), "the query's vector is")
        scope, names = self._scope.named(table, query)
        if scope is None:
            scores, by_id = self._fused(table, query, vector, candidates)
        else:
            # The named document's passages, ranked by the question without the document's name.
            scores, by_id = self._fused(table, without_words(query, names), vector, candidates,
                                        where=f"document_id = '{scope}'")
        ranked = sorted(scores, key=lambda row_id: scores[row_id], reverse=True)
        ranked = ranked[:k]
        rows = [{**by_id[row_id], "_relevance_score": scores[row_id]} for row_id in ranked]
        return [
            SearchHit(
                id=row["id"],
                document_id=row["document_id"],
                source_key=row["source_key"],
                page_start=row["page_start"],
                page_end=row["page_end"],
                heading_path=row["heading_path"],
                text=row["text"],
                score=float(row["_relevance_score"]),
                metadata={
                    "chunk_index": row["chunk_index"],
                    "processing_version": row["processing_version"],
                    "entities": json.loads(row["entities"]),
                    "key_phrases": list(row["key_phrases"] or []),
                    "redactions": json.loads(row["redactions"]),
                    "embed_model": row["embed_model"],
                },
            )
            for row in rows
        ]
