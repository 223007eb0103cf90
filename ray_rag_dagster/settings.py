"""One settings object for the whole pipeline, read from ``RAY_RAG_*`` environment variables.

Every backend is chosen from these settings in one place (:mod:`ray_rag_dagster.backends`). The object is
plain data, so it travels to Ray workers as is and each worker builds the same backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.home() / ".ray-rag"


class Settings(BaseSettings):
    """Where state lives and which backend implements each seam."""

    model_config = SettingsConfigDict(env_prefix="RAY_RAG_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Folder holding all local state.")

    # Backends (local implementations are the embedded default).
    object_store: Literal["local", "s3"] = "local"
    status_store: Literal["sqlite", "dynamodb"] = "sqlite"
    # static (default): a 256-d static model the project distils once from all-MiniLM-L6-v2 (model2vec),
    # ≈50× the chunks/s of int8 MiniLM; with the hybrid search it scores as MiniLM does on `ray-rag evaluate`
    # (recall@5 0.940 / MRR@10 0.829 both; README, Quality), so the rule makes it the default.
    # onnx: all-MiniLM-L6-v2 on ONNX Runtime (exported once from the wheel's model; fp32 is 2.1× faster than
    # torch, int8 2.1× more), stronger on paraphrased questions the full-text leg cannot match;
    # local: MiniLM on torch; openai: the OpenAI embeddings API.
    embedder: Literal["onnx", "local", "static", "openai"] = "static"
    enricher: Literal["local", "openai"] = "local"
    vector_index: Literal["lancedb", "pinecone"] = "lancedb"

    # AWS: one endpoint override for S3, DynamoDB and Secrets Manager (moto's server, LocalStack).
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    s3_bucket: str | None = None
    dynamodb_table_prefix: str = "ray-rag"  # tables <prefix>-control, <prefix>-audit, <prefix>-metrics

    # OpenAI (or any OpenAI-compatible server through the base URL). A key is given directly or as the ARN
    # of a Secrets Manager secret, resolved at start-up; it is a SecretStr so it never prints.
    openai_api_key: SecretStr | None = None
    openai_api_key_secret_arn: str | None = None
    openai_base_url: str | None = None
    openai_embed_model: str = "text-embedding-3-small"
    openai_enrich_model: str = "gpt-4o-mini"
    openai_vision_model: str = "gpt-4o"
    describe_pictures: bool = False  # picture and table descriptions with the vision model during extract
    openai_max_retries: int = 6

    # Pinecone.
    pinecone_api_key: SecretStr | None = None
    pinecone_api_key_secret_arn: str | None = None
    pinecone_index: str = "ray-rag"
    pinecone_namespace: str = "default"
    pinecone_cloud: str = "aws"
    pinecone_region: str = "us-east-1"
    pinecone_host: str | None = None  # data-plane host override (a private endpoint, or a test stand-in)
    pinecone_controller_host: str | None = None  # control-plane override (a test stand-in)

    # USD per million tokens, by model. Local models cost nothing.
    prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "text-embedding-3-small": {"input": 0.02},
            "gpt-4o-mini": {"input": 0.15, "output": 0.60},
            "gpt-4o": {"input": 2.50, "output": 10.00},
        }
    )

    # Ray: None starts (or joins) the machine's shared local cluster; "auto" (inside a Ray job) or
    # "host:port" joins a running cluster.
    ray_address: str | None = None
    ray_num_cpus: int | None = None  # CPUs of the local cluster (default: all)
    ray_object_store_mb: int = 256
    ray_workers: int | None = None  # warm stage workers (default: one per CPU of the cluster)
    ray_worker_memory_mb: int = 3072  # Ray memory each worker reserves (docling peaks at ~1.7 GB)
    # Runs: documents per Dagster run (BackfillPolicy.multi_run; the sensor and the CLI batch the same way).
    partitions_per_run: int = Field(25, ge=1)
    # Any task over this fails its document (a hung PDF must not hold a run forever).
    stage_timeout_seconds: float = 900
    # A document still unfinished this long after its first task started fails (its tasks' workers restart).
    document_timeout_seconds: float = 3600
    stage_attempts: int = Field(3, ge=1)  # tries of a task that failed transiently (worker lost, ...)
    # Docling keeps memory after each conversion (docling issues #1311, #2788): recycle an extract worker
    # after this many documents. 0 keeps workers forever.
    extract_max_calls: int = 20

    # Extraction. A long PDF is extracted as page ranges on parallel Ray tasks, then merged.
    extract_pages_per_shard: int = 25
    extract_engine: Literal["offline", "docling"] = "offline"
    # Caps on bad input: a larger PDF ends FAILED with the reason, before any conversion.
    max_pages: int = Field(2000, ge=1)
    max_document_mb: int = Field(200, ge=1)
    docling_artifacts_path: str | None = None
    ocr: bool = True

    # Chunking and embedding.
    # Chunk size: chunks are measured in the embedder's tokens, limited to chunk_target_chars converted at each
    # document's own characters per token (1500: the size retrieval was tuned on; ≈350-450 MiniLM word pieces,
    # ≈1500 bytes for OpenAI); chunk_max_tokens, when set, is the limit in tokens instead.
    chunk_target_chars: int = Field(1500, ge=100)
    chunk_max_tokens: int | None = Field(None, ge=16)
    embed_model: str = "all-MiniLM-L6-v2"
    embed_batch_size: int = 32
    # Where the embedders' one-time builds (ONNX export, distilled static model) are kept; default
    # <home>/models. A shared folder spares each new state folder the build (the tests use one).
    model_cache: Path | None = None
    # The onnx embedder's weights: int8 (MatMul weights quantized per channel, derived once from the fp32
    # export) runs 2.7x the chunks/s of fp32 on one core, and `ray-rag evaluate` on 3 protocols scored
    # recall@5 0.916 / MRR@10 0.821 vs fp32's 0.916 / 0.818 (fresh ingests, bench/results); fp32 = as exported.
    onnx_precision: Literal["fp32", "int8"] = "int8"

    # Vector index and search. Search fuses full-text (BM25) and vector scores; clinical questions are
    # keyword-heavy, so full text weighs more by default.
    lancedb_table: str = "chunks"
    # 0.85: best recall@5 of the weights 0.6-0.9 on the 3 protocols' 215 questions, and no protocol lost (README, Quality)
    search_text_weight: float = Field(0.85, ge=0.0, le=1.0)

    # Status leases: a live run renews its documents' leases every lease_seconds / 5 (heartbeat); a run
    # that died frees them after this long, and the sensor requests them again.
    lease_seconds: int = Field(300, ge=10)

    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"

    @property
    def inbox_dir(self) -> Path:
        """The local inbox is the object store's ``input/`` prefix: drop PDFs here."""
        return self.objects_dir / "input"

    @property
    def status_db(self) -> Path:
        return self.home / "status.sqlite"

    @property
    def lancedb_dir(self) -> Path:
        return self.home / "lancedb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def models_dir(self) -> Path:
        """Models the embedders export or distil once (a cache, not pipeline state)."""
        return self.model_cache or self.home / "models"


# (settings field holding the key, field holding the ARN of the Secrets Manager secret that holds it)
_SECRET_FIELDS = (("openai_api_key", "openai_api_key_secret_arn"), ("pinecone_api_key", "pinecone_api_key_secret_arn"))


def resolve_secrets(settings: Settings) -> Settings:
    """Fetch API keys given as Secrets Manager ARNs, once, at start-up.

    The secret may hold the bare key or JSON with an ``api_key`` field. The value lands in a ``SecretStr``,
    which prints as ``**********`` in logs, reprs and errors.
    """
    import json

    missing = [(key, arn) for key, arn in _SECRET_FIELDS if getattr(settings, arn) and getattr(settings, key) is None]
    if not missing:
        return settings
    from ray_rag_dagster.backends.object_store import aws_client

    client = aws_client("secretsmanager", settings.aws_region, settings.aws_endpoint_url)
    updates: dict[str, SecretStr] = {}
    for key, arn in missing:
        secret = client.get_secret_value(SecretId=getattr(settings, arn))["SecretString"]
        try:
            value = json.loads(secret)["api_key"]
        except (ValueError, KeyError, TypeError):
            value = secret.strip()
        updates[key] = SecretStr(value)
    return settings.model_copy(update=updates)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (plus overrides), with secrets resolved."""
    return resolve_secrets(Settings(**overrides))  # type: ignore[arg-type]
