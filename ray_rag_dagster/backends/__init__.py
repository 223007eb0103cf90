"""Every backend is chosen here, from :class:`~ray_rag_dagster.settings.Settings`, and nowhere else.

Each seam is a small interface with a local implementation (the embedded default); cloud implementations
plug in beside them and are selected by the same settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_rag_dagster.backends.embedder import Embedder
    from ray_rag_dagster.backends.enrich import Enricher
    from ray_rag_dagster.backends.object_store import ObjectStore
    from ray_rag_dagster.backends.status_store import StatusStore
    from ray_rag_dagster.backends.vector_index import VectorIndex
    from ray_rag_dagster.settings import Settings


def _require(value: str | None, setting: str, backend: str) -> str:
    if not value:
        raise ValueError(f"{setting} must be set for the {backend} backend")
    return value


def build_object_store(settings: Settings) -> ObjectStore:
    from ray_rag_dagster.backends.object_store import LocalObjectStore, S3ObjectStore

    if settings.object_store == "s3":
        bucket = _require(settings.s3_bucket, "RAY_RAG_S3_BUCKET", "s3")
        return S3ObjectStore(bucket, settings.aws_region, settings.aws_endpoint_url)
    return LocalObjectStore(settings.objects_dir)


def build_status_store(settings: Settings) -> StatusStore:
    if settings.status_store == "dynamodb":
        from ray_rag_dagster.backends.dynamodb_status_store import DynamoDBStatusStore

        return DynamoDBStatusStore(settings.dynamodb_table_prefix, settings.aws_region, settings.aws_endpoint_url)
    from ray_rag_dagster.backends.sqlite_status_store import SqliteStatusStore

    return SqliteStatusStore(settings.status_db)


def build_embedder(settings: Settings, *, query_threads: int | None = None) -> Embedder:
    """``query_threads``: CPU threads of a local model that embeds queries (one short text at a time), where
    one thread is fastest: on 2 shared cores a thread pool spun 2.4× the CPU for a slower query (bench/)."""
    if settings.embedder == "openai":
        from ray_rag_dagster.backends.embedder import OpenAIEmbedder

        return OpenAIEmbedder(settings)
    if settings.embedder == "static":
        from ray_rag_dagster.backends.static_embedder import StaticEmbedder

        return StaticEmbedder(settings.models_dir, settings.embed_model)
    if settings.embedder == "onnx":
        from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(settings.models_dir, settings.embed_model, settings.embed_batch_size,
                            num_threads=query_threads, precision=settings.onnx_precision)
    from ray_rag_dagster.backends.embedder import LocalEmbedder

    return LocalEmbedder(settings.embed_model, settings.embed_batch_size)


def build_enricher(settings: Settings) -> Enricher:
    if settings.enricher == "openai":
        from ray_rag_dagster.backends.enrich import OpenAIEnricher

        return OpenAIEnricher(settings)
    from ray_rag_dagster.backends.enrich import LocalEnricher

    return LocalEnricher()


def build_vector_index(settings: Settings) -> VectorIndex:
    if settings.vector_index == "pinecone":
        from ray_rag_dagster.backends.pinecone_index import PineconeIndex

        return PineconeIndex.from_settings(settings)
    from ray_rag_dagster.backends.vector_index import LanceDBIndex

    return LanceDBIndex(settings.lancedb_dir, settings.lancedb_table, settings.search_text_weight)
