"""Pinecone serverless as the vector index (``RAY_RAG_VECTOR_INDEX=pinecone``), through the ``pinecone`` client.

The index is created on first write if it does not exist: serverless (``cloud``/``region`` from settings), one
dense field of the records' dimension, metric cosine; the backend waits until it is ready. Search is dense
only (the query text is not used): Pinecone's full-text leg would need a sparse vector per chunk and a
``dotproduct`` index (see :meth:`PineconeIndex.search`).

Vector ids are ``"<document_id>#<version>#<chunk id>"`` so a document's vectors, or one version's, can be listed
by id prefix: serverless indexes are listed, not filtered, to find what to delete. A reload writes the new
version's vectors beside the old ones; search filters on ``document_version`` and serves only the version the
status store says is COMPLETED; once the new version is completed, the old version's vectors are deleted
(:meth:`PineconeIndex.remove_other_versions`). So a reload that fails half-way leaves the old version served
whole, re-running a load never duplicates, and the document is never missing in between.

Requests stay within Pinecone's limits: at most 1000 vectors and 2 MiB of JSON per upsert (batches are cut by
encoded size), 1000 ids per delete, 100 ids per list page, 40 KiB of metadata per vector.

Retries: the client retries each request up to 3 times itself (honouring ``Retry-After``, within a per-host
retry budget; its data-plane client has no switch for that). Around every call, a tenacity policy retries 429,
5xx, timeouts and connection errors with exponential backoff and full jitter, so a throttling burst longer
than the client's own retries is ridden out. A rejected key (401) fails at once with a message that names the
setting, never the key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import tenacity
from pinecone import (
    ConflictError,
    NotFoundError,
    Pinecone,
    PineconeConnectionError,
    PineconeTimeoutError,
    RateLimitError,
    ServiceError,
    UnauthorizedError,
)
from pydantic import SecretStr

from ray_rag_dagster.backends.pinecone_records import (
    REDACTION_PREFIX,
    entities_from,
    record_metadata,
    served_filters,
    upsert_batches,
)
from ray_rag_dagster.backends.vector_index import IndexRecord, SearchHit, VectorIndex
from ray_rag_dagster.ids import safe_document_id

if TYPE_CHECKING:
    from pinecone import Index
    from pinecone.models.indexes.index import IndexModel

    from ray_rag_dagster.settings import Settings

_log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_IDS_PER_DELETE = 1000
LIST_PAGE_SIZE = 100
# The reserved field name Pinecone's vectors API (upsert/query by ``values``) addresses a dense index by; an
# index declared with it is what the 9.x ``dimension=``/``metric=`` arguments created.
DENSE_FIELD = "_values"
METRIC = "cosine"
# Pinecone's data plane calls the namespace with no name this.
DEFAULT_NAMESPACE_NAMES = ("", "__default__")


class PineconeIndexError(RuntimeError):
    """The Pinecone index cannot be used as configured. The message is safe to log (no key)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per call (each attempt is itself up to 4 requests by the client's own retries)."""

    max_attempts: int = 6
    backoff_base_s: float = 1.0  # full jitter: the n-th wait is uniform in [0, base * 2**n], capped
    backoff_max_s: float = 30.0
    ready_timeout_s: float = 300.0  # how long a new index may take to become ready
    ready_poll_max_s: float = 5.0


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, RateLimitError | ServiceError | PineconeTimeoutError | PineconeConnectionError)


class PineconeIndex(VectorIndex):
    """Vectors and metadata in a Pinecone serverless index, one namespace for the whole collection."""

    def __init__(
        self,
        *,
        api_key: SecretStr,
        index_name: str,
        namespace: str = "default",
        cloud: str = "aws",
        region: str = "us-east-1",
        host: str | None = None,
        controller_host: str | None = None,
        retry: RetryPolicy | None = None,
        served_versions: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """``served_versions`` gives each document's completed version (the status store's answer): search
        returns only those versions' vectors. Without it, search returns every vector."""
        self.index_name = index_name
        self._served_versions = served_versions
        self.namespace = namespace
        self.cloud = cloud
        self.region = region
        self.host_override = host
        self.retry = retry or RetryPolicy()
        self._client = Pinecone(api_key=api_key.get_secret_value(), host=controller_host)
        self._index: Index | None = None
        self._checked_dimension: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, retry: RetryPolicy | None = None) -> PineconeIndex:
        """Build from settings; the key is ``pinecone_api_key`` (the caller resolves a secret ARN into it)."""
        from ray_rag_dagster.backends import build_status_store
        from ray_rag_dagster.backends.status_store import CompletedVersions

        if settings.pinecone_api_key is None:
            raise PineconeIndexError(
                "no Pinecone API key: set RAY_RAG_PINECONE_API_KEY "
                "(or RAY_RAG_PINECONE_API_KEY_SECRET_ARN, resolved at start-up)"
            )
        return cls(
            api_key=settings.pinecone_api_key,
            index_name=settings.pinecone_index,
            namespace=settings.pinecone_namespace,
            cloud=settings.pinecone_cloud,
            region=settings.pinecone_region,
            host=settings.pinecone_host,
            controller_host=settings.pinecone_controller_host,
            retry=retry,
            served_versions=CompletedVersions(build_status_store(settings)),
        )

    # --- plumbing -----------------------------------------------------------------------------------

    def _call(self, operation: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """One Pinecone call under the retry policy; a rejected key fails at once with a safe message."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_transient),
            wait=tenacity.wait_random_exponential(multiplier=self.retry.backoff_base_s, max=self.retry.backoff_max_s),
            stop=tenacity.stop_after_attempt(self.retry.max_attempts),
            before_sleep=tenacity.before_sleep_log(_log, logging.WARNING),
            reraise=True,
        )
        try:
            return retrying(operation, *args, **kwargs)
        except UnauthorizedError:
            # ``from None``: the key never appears in Pinecone's answer, but the chained error carries the
            # whole response; the message below is all an operator needs.
            raise PineconeIndexError(
                f"Pinecone rejected the API key (401 Unauthorized) for index {self.index_name!r}: check "
                "RAY_RAG_PINECONE_API_KEY or the secret RAY_RAG_PINECONE_API_KEY_SECRET_ARN names"
            ) from None

    def _describe(self) -> IndexModel | None:
        try:
            return self._call(self._client.indexes.describe, self.index_name)
        except NotFoundError:
            return None

    def _wait_until_ready(self) -> IndexModel:
        waiting = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda model: model is None or not model.status.ready),
            wait=tenacity.wait_exponential(multiplier=0.25, max=self.retry.ready_poll_max_s),
            stop=tenacity.stop_after_delay(self.retry.ready_timeout_s),
        )
        try:
            model = waiting(self._describe)
        except tenacity.RetryError:
            raise PineconeIndexError(
                f"Pinecone index {self.index_name!r} not ready after {self.retry.ready_timeout_s:.0f} s"
            ) from None
        assert model is not None  # the retry condition above
        return model

    def _create(self, dimension: int) -> IndexModel:
        _log.info("creating Pinecone serverless index %r (%d-d, %s, %s/%s)",
                  self.index_name, dimension, METRIC, self.cloud, self.region)
        try:
            self._call(
                self._client.indexes.create,
                name=self.index_name,
                schema={"fields": {DENSE_FIELD: {"type": "dense_vector", "dimension": dimension, "metric": METRIC}}},
                deployment={"deployment_type": "managed", "cloud": self.cloud, "region": self.region},
                timeout=-1,  # the client polls every 5 s; _wait_until_ready backs off from 0.25 s
            )
        except ConflictError:
            _log.info("Pinecone index %r was created concurrently", self.index_name)
        return self._wait_until_ready()

    def _check_shape(self, model: IndexModel, dimension: int) -> None:
        field = model.schema.fields.get(DENSE_FIELD)
        actual_dimension = getattr(field, "dimension", None)
        actual_metric = getattr(field, "metric", None)
        if actual_dimension != dimension or actual_metric != METRIC:
            raise PineconeIndexError(
                f"Pinecone index {self.index_name!r} has dimension {actual_dimension} and metric {actual_metric}; "
                f"these records need dimension {dimension} and metric {METRIC} (another embedding model?)"
            )

    def _data_plane(self, model: IndexModel | None) -> Index:
        if self._index is None:
            host = self.host_override or (model.host if model is not None else None)
            if not host:
                raise PineconeIndexError(f"Pinecone index {self.index_name!r} has no host yet")
            self._index = self._client.index(host=host)
        return self._index

    def _writable_index(self, dimension: int) -> Index:
        """The index, created (and waited for) if missing, checked to hold vectors of ``dimension``."""
        if self._checked_dimension != dimension:
            model = self._describe()
            if model is None:
                model = self._create(dimension)
            elif not model.status.ready:
                model = self._wait_until_ready()
            self._check_shape(model, dimension)
            self._data_plane(model)
            self._checked_dimension = dimension
        assert self._index is not None
        return self._index

    def _readable_index(self) -> Index | None:
        """The index for reading, or None if it does not exist yet (nothing was ever loaded)."""
        if self._index is None and self.host_override is None:
            model = self._describe()
            if model is None:
                return None
            return self._data_plane(model)
        return self._data_plane(None)

    def _ids_with_prefix(self, index: Index, prefix: str) -> list[str]:
        ids: list[str] = []
        token: str | None = None
        while True:
            page = self._call(index.list_paginated, prefix=prefix, limit=LIST_PAGE_SIZE,
                              pagination_token=token, namespace=self.namespace)
            ids.extend(item.id for item in page.vectors if item.id is not None)
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                return ids

    def _delete_ids(self, index: Index, ids: list[str]) -> None:
        for start in range(0, len(ids), MAX_IDS_PER_DELETE):
            self._call(index.delete, ids=ids[start : start + MAX_IDS_PER_DELETE], namespace=self.namespace)

    # --- VectorIndex --------------------------------------------------------------------------------

    @staticmethod
    def vector_id(document_id: str, version: str, chunk_id: str) -> str:
        return f"{document_id}#{version}#{chunk_id}"

    def replace_document(self, document_id: str, records: list[IndexRecord]) -> int:
        """Upsert the version's vectors, then delete that version's ids not among them; return how many it has.

        Other versions' vectors stay (search serves only the completed one) until :meth:`remove_other_versions`
        runs once this version is completed: a reload that fails half-way never leaves a mix in the results.
        The count is what was written, not a re-listing: serverless reads are eventually consistent, so a
        list right after the upsert may not show every new vector yet.
        """
        document_id = safe_document_id(document_id)
        if not records:
            self.delete_document(document_id)
            return 0
        version = records[0].processing_version
        dimension = int(records[0].vector.shape[0])
        index = self._writable_index(dimension)
        # Keyed by id: a repeated id is one vector (the last record wins), as an upsert would make it.
        vectors = {
            self.vector_id(document_id, version, record.id): {
                "id": self.vector_id(document_id, version, record.id),
                "values": np.asarray(record.vector, dtype=np.float32).tolist(),
                "metadata": record_metadata(record),
            }
            for record in records
        }
        requests = 0
        try:
            for batch in upsert_batches(list(vectors.values()), self.namespace):
                self._call(index.upsert, vectors=batch, namespace=self.namespace)
                requests += 1
        except Exception:
            self._discard_partial(index, document_id, version)
            raise
        stale = [
            vector_id for vector_id in self._ids_with_prefix(index, f"{document_id}#{version}#")
            if vector_id not in vectors
        ]
        self._delete_ids(index, stale)
        _log.info("pinecone %s/%s: %s version %s has %d vectors (%d upsert requests, %d stale deleted)",
                  self.index_name, self.namespace, document_id, version, len(vectors), requests, len(stale))
        return len(vectors)

    def _discard_partial(self, index: Index, document_id: str, version: str) -> None:
        """After a failed upsert, remove what this version wrote, unless it is the version being served."""
        if self._served_versions is not None and self._served_versions().get(document_id) == version:
            return
        try:
            self._delete_ids(index, self._ids_with_prefix(index, f"{document_id}#{version}#"))
        except Exception as error:  # noqa: BLE001 - search filters them out anyway; the upsert error is the news
            _log.warning("pinecone: could not remove the partial load of %s version %s (%s); search does not "
                         "serve it", document_id, version, type(error).__name__)

    def remove_other_versions(self, document_id: str, keep_version: str) -> int:
        document_id = safe_document_id(document_id)
        index = self._readable_index()
        if index is None:
            return 0
        keep = f"{document_id}#{keep_version}#"
        ids = [vector_id for vector_id in self._ids_with_prefix(index, f"{document_id}#")
               if not vector_id.startswith(keep)]
        self._delete_ids(index, ids)
        return len(ids)

    def delete_document(self, document_id: str) -> int:
        document_id = safe_document_id(document_id)
        index = self._readable_index()
        if index is None:
            return 0
        ids = self._ids_with_prefix(index, f"{document_id}#")
        self._delete_ids(index, ids)
        return len(ids)

    def search(self, query: str, vector: np.ndarray, k: int) -> list[SearchHit]:
        """Nearest chunks by cosine similarity (``score``); ``query`` is unused: this index is dense only.

        Hybrid search on Pinecone would store a sparse vector per chunk (BM25 or SPLADE weights) beside the
        dense one, in an index whose schema declares a ``sparse_vector`` field and whose dense metric is
        ``dotproduct``, and query both at once with the weights applied to the two query vectors.
        """
        index = self._readable_index()
        if index is None:
            return []
        query_vector = np.asarray(vector, dtype=np.float32).tolist()
        matches = []
        served_versions = None if self._served_versions is None else self._served_versions()
        for served in served_filters(served_versions):
            response = self._call(index.query, vector=query_vector, top_k=k, include_metadata=True,
                                  namespace=self.namespace, filter=served)
            matches.extend(response.matches)
        matches = sorted(matches, key=lambda match: match.score, reverse=True)[:k]
        hits = []
        for match in matches:
            metadata = match.metadata or {}
            redactions = {
                key.removeprefix(REDACTION_PREFIX): int(value)
                for key, value in metadata.items() if key.startswith(REDACTION_PREFIX)
            }
            hits.append(
                SearchHit(
                    id=match.id.rpartition("#")[2],
                    document_id=str(metadata.get("document_id", match.id.partition("#")[0])),
                    source_key=str(metadata.get("source_key", "")),
                    page_start=int(metadata.get("page_start", 0)),
                    page_end=int(metadata.get("page_end", 0)),
                    heading_path=str(metadata.get("heading_path", "")),
                    text=str(metadata.get("text", "")),
                    score=float(match.score),
                    metadata={
                        "chunk_index": int(metadata.get("chunk_index", 0)),
                        "processing_version": metadata.get("processing_version"),
                        "content_hash": metadata.get("content_hash"),
                        "entities": entities_from(metadata),
                        "key_phrases": list(metadata.get("key_phrases") or []),
                        "redactions": redactions,
                        "embed_model": metadata.get("embed_model"),
                        "text_truncated": bool(metadata.get("text_truncated", False)),
                    },
                )
            )
        return hits

    def count(self, document_id: str | None = None) -> int:
        index = self._readable_index()
        if index is None:
            return 0
        if document_id is not None:
            return len(self._ids_with_prefix(index, f"{safe_document_id(document_id)}#"))
        stats = self._call(index.describe_index_stats)
        names = DEFAULT_NAMESPACE_NAMES if self.namespace in DEFAULT_NAMESPACE_NAMES else (self.namespace,)
        return sum(stats.namespaces[name].vector_count for name in names if name in stats.namespaces)
