"""One settings object for the whole pipeline, read from ``RAY_RAG_*`` environment variables.

Every backend is chosen from these settings in one place (:mod:`ray_rag_dagster.backends`). The object is
plain data, so it travels to Ray workers as is and each worker builds the same backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.home() / ".ray-rag"


class Settings(BaseSettings):
    """Where state lives and which backend implements each seam."""

    model_config = SettingsConfigDict(env_prefix="RAY_RAG_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Folder holding all local state.")

    # Backends (local implementations are the embedded default).
    object_store: Literal["local"] = "local"
    status_store: Literal["sqlite"] = "sqlite"
    embedder: Literal["local"] = "local"
    enricher: Literal["local"] = "local"
    vector_index: Literal["lancedb"] = "lancedb"

    # Ray: None starts a private local cluster in the process that needs it; "auto" or
    # "ray://host:10001" joins a running cluster.
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    ray_object_store_mb: int = 256
    # Docling keeps memory after each conversion (docling issues #1311, #2788): recycle an extract worker
    # after this many documents. 0 keeps workers forever.
    extract_max_calls: int = 20

    # Extraction.
    extract_engine: Literal["offline", "docling"] = "offline"
    docling_artifacts_path: str | None = None
    ocr: bool = True

    # Chunking and embedding.
    chunk_target_chars: int = 1500
    embed_model: str = "all-MiniLM-L6-v2"
    embed_batch_size: int = 32

    # Vector index and search. Search fuses full-text (BM25) and vector scores; clinical questions are
    # keyword-heavy, so full text weighs more by default.
    lancedb_table: str = "chunks"
    search_text_weight: float = Field(0.7, ge=0.0, le=1.0)

    # Status leases: a run that crashed frees its documents after this long.
    lease_seconds: int = 3600

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
