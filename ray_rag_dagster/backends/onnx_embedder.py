"""The local embedding model run by ONNX Runtime instead of torch: the same vectors, faster on a CPU.

The ONNX graph is built by the project itself, on first use, from the sentence-transformers model that
:class:`~ray_rag_dagster.backends.embedder.LocalEmbedder` loads (``torch.onnx.export``, opset 17). The graph
includes the model's mean pooling and L2 normalisation, so it outputs sentence vectors. It is cached on disk
under ``<models_dir>/<model>.onnx-v<N>/`` (``model.onnx``, ``tokenizer.json``, ``config.json``); a file lock
makes concurrent Ray workers wait for the one that exports instead of exporting in parallel.

The graph is traced from transformers' *eager* attention (format v2). Format v1 traced the default SDPA
attention, whose export builds the padding mask with ``IsNaN``/``Where`` over every (batch, head, query, key)
score: ≈9 % of the run time at 256 tokens in ONNX Runtime's profile (MatMul ≈76 %, the model is compute-bound).
The eager graph computes the same vectors (cosine 1.000000 to v1 and to torch) ≈10 % faster per token;
``attention="sdpa"`` rebuilds v1 for comparison (bench/embedding.py).

At run time only ``onnxruntime`` and ``tokenizers`` are used (no torch import). Long texts are split into
token windows and mean-pooled exactly like ``LocalEmbedder``, so nothing is cut off; pieces are sorted by
token length before batching, so a batch pads to similar lengths, and a batch holds at most
``max_batch_tokens`` padded tokens, which bounds ONNX Runtime's memory arena.
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

from ray_rag_dagster.backends.embedder import WindowPoolingEmbedder

# Bump when the exported graph changes (inputs, outputs, opset, attention), so stale caches are rebuilt.
EXPORT_FORMAT_VERSION = 2
# The format each attention implementation was exported as: v1 = SDPA (the first version), v2 = eager.
_FORMAT_OF_ATTENTION = {"sdpa": 1, "eager": EXPORT_FORMAT_VERSION}
OPSET = 17
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class OnnxModelFiles:
    folder: Path

    @property
    def model(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    def complete(self) -> bool:
        return self.model.is_file() and self.tokenizer.is_file() and self.config.is_file()


def onnx_model_files(models_dir: Path, model_name: str, attention: str = "eager", precision: str = "fp32") -> OnnxModelFiles:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name)
    suffix = "" if precision == "fp32" else f"-{precision}"
    return OnnxModelFiles(Path(models_dir) / f"{slug}.onnx-v{_FORMAT_OF_ATTENTION[attention]}{suffix}")


def ensure_onnx_model(models_dir: Path, model_name: str, attention: str = "eager", precision: str = "fp32") -> OnnxModelFiles:
    """Export ``model_name`` to ONNX once (and quantize it, for ``precision="int8"``); later calls (any
    process) find it on disk."""
    files = onnx_model_files(models_dir, model_name, attention, precision)
    if files.complete():
        return files
    from filelock import FileLock

    full = ensure_onnx_model(models_dir, model_name, attention) if precision == "int8" else None
    files.folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(files.folder) + ".lock"):
        if not files.complete():  # another worker may have finished while this one waited
            if full is None:
                _export(model_name, files, attention)
            else:
                _quantize(full, files)
    return files


def _quantize(full: OnnxModelFiles, files: OnnxModelFiles) -> None:
    """The fp32 graph with its MatMul weights in int8, one scale per output channel (dynamic quantization).

    Measured on 300 protocol chunks, one thread: 2.7× the chunks/s of fp32, vectors at cosine 0.994 mean,
    0.986 min to fp32's. Per-tensor scales (one per weight matrix) drift to cosine 0.94 mean, 0.79 min, and
    quantizing the embedding lookup too is worse still: the outlier channels of BERT's weights need their own
    scale. Only MatMul: the embeddings (Gather) stay fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = Path(tempfile.mkdtemp(prefix=files.folder.name + ".", dir=files.folder.parent))
    quantize_dynamic(str(full.model), str(staging / files.model.name), weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul"])
    shutil.copy(full.tokenizer, staging / files.tokenizer.name)
    config = json.loads(full.config.read_text())
    (staging / files.config.name).write_text(json.dumps({**config, "precision": "int8"}, indent=2))
    _move_into_place(staging, files)


def _export(model_name: str, files: OnnxModelFiles, attention: str) -> None:
    """Write the graph, tokenizer and config into a temporary folder, then move it into place in one rename."""
    import torch

    from ray_rag_dagster.backends.embedder import _load_sentence_transformer

    # v1 traced the model exactly as LocalEmbedder loads it (transformers' default attention, SDPA)
    sentence_model = _load_sentence_transformer(model_name, None if attention == "sdpa" else attention)

    class SentenceVectors(torch.nn.Module):
        """Inputs by keyword (the exporter passes them so), output = pooled, normalised sentence vectors."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = sentence_model

        def forward(  # type: ignore[no-untyped-def]
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ):
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(features)["sentence_embedding"]

    sample = sentence_model.tokenizer(
        ["an example", "a second, longer example text"], padding=True, return_tensors="pt"
    )
    staging = Path(tempfile.mkdtemp(prefix=files.folder.name + ".", dir=files.folder.parent))
    # The tracer warns about Python conditions on shapes in the model code; the graph is checked against
    # torch on padded batches of several lengths in the tests, so the warnings are noise here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceVectors().eval(),
            (),
            str(staging / files.model.name),
            kwargs={name: sample[name] for name in _INPUT_NAMES},
            input_names=list(_INPUT_NAMES),
            output_names=["sentence_embedding"],
            dynamic_axes={
                **{name: {0: "batch", 1: "sequence"} for name in _INPUT_NAMES},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter handles BERT's dynamic shapes without onnxscript
        )
    sentence_model.tokenizer.backend_tokenizer.save(str(staging / files.tokenizer.name))
    config = {
        "model_name": model_name,
        "dimension": int(sentence_model.get_embedding_dimension()),
        "max_seq_length": int(sentence_model.max_seq_length),
        "opset": OPSET,
        "attention": attention,
        "torch": torch.__version__,
    }
    (staging / files.config.name).write_text(json.dumps(config, indent=2))
    _move_into_place(staging, files)


def _move_into_place(staging: Path, files: OnnxModelFiles) -> None:
    if files.folder.exists():  # an incomplete folder left by a killed export
        shutil.rmtree(files.folder)
    staging.rename(files.folder)


@lru_cache(maxsize=2)
def _load_runtime(folder: str, num_threads: int):  # type: ignore[no-untyped-def]
    """ONNX session and tokenizer, once per process (a Ray worker keeps them across tasks)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    files = OnnxModelFiles(Path(folder))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads  # 0 = ONNX Runtime's default (one per physical core)
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(files.model), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(files.tokenizer))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return session, tokenizer, json.loads(files.config.read_text())


def _default_threads() -> int:
    """Follow the CPUs Ray reserved for the task (Ray sets OMP_NUM_THREADS on workers); 0 = ORT decides.

    Measured in a Ray task (num_cpus=1) on token-dense chunks, 2 cores, v1 graph: 1 thread 6.2 chunks/s, 2
    threads 9.1 while the other core idles, but 4.5 (1 thread) vs 2.7 (2 threads) while another task keeps the
    other core busy: an oversubscribed thread pool is slower than one thread. So a task uses the CPUs it
    reserved and no more.
    """
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


class OnnxEmbedder(WindowPoolingEmbedder):
    """The same model and window pooling as ``LocalEmbedder``, run by ONNX Runtime."""

    def __init__(
        self,
        models_dir: Path,
        model_name: str = "all-MiniLM-L6-v2",
        batch_size: int = 32,
        num_threads: int | None = None,
        max_batch_tokens: int = 512,
        attention: str = "eager",
        precision: str = "fp32",
    ) -> None:
        files = ensure_onnx_model(models_dir, model_name, attention, precision)
        self.tokenizer_path = files.tokenizer
        self.name = model_name if precision == "fp32" else f"{model_name}-{precision}"
        self.batch_size = batch_size
        # Measured (bench/): 8 full 256-token windows per batch ran faster than 32 and peaked at ~385 MB
        # instead of ~1050 MB (ONNX Runtime's arena keeps the largest batch's attention buffers). On token-dense
        # chunks (2-3 full windows each), 2 windows per batch (512 tokens) beat 4, 8 and 16 in CPU time per
        # chunk on one thread (7.3-7.8 vs 6.8-7.0, 6.2-6.6, 5.5-5.7 chunks/s per CPU-second, loaded machine);
        # smaller batches keep a batch's activations in cache.
        self.max_batch_tokens = max_batch_tokens
        self.session, self.tokenizer, config = _load_runtime(
            str(files.folder), _default_threads() if num_threads is None else num_threads
        )
        self.dimension = int(config["dimension"])
        self.max_seq_length = int(config["max_seq_length"])
        # Room for [CLS] and [SEP].
        self.window_tokens = self.max_seq_length - 2

    def _token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer.encode(text, add_special_tokens=False).offsets

    def count_tokens(self, texts: list[str]) -> list[int]:
        # The chunker counts thousands of texts per document: the encodings' lengths, without building offsets.
        return [len(self.tokenizer.encode(text, add_special_tokens=False)) for text in texts]

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Piece indices grouped by ascending token length: at most ``batch_size`` pieces and at most
        ``max_batch_tokens`` padded tokens per batch (attention memory grows with batch × length²)."""
        batches: list[list[int]] = []
        current: list[int] = []
        for index in np.argsort(lengths, kind="stable").tolist():
            # ascending order: this piece is the longest so far, so it sets the padded width
            full = len(current) == self.batch_size or (len(current) + 1) * lengths[index] > self.max_batch_tokens
            if current and full:
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _encode(self, pieces: list[str]) -> np.ndarray:
        """Sentence vectors for ``pieces``, batched by token length (little padding, bounded memory)."""
        # sentence-transformers strips each input before tokenizing; so does this, for identical vectors.
        encodings = self.tokenizer.encode_batch([piece.strip() for piece in pieces], add_special_tokens=True)
        # Truncate like the transformers tokenizer: keep [CLS], the first tokens, and [SEP].
        limit = self.max_seq_length
        ids = [e.ids if len(e.ids) <= limit else e.ids[: limit - 1] + e.ids[-1:] for e in encodings]
        vectors = np.zeros((len(pieces), self.dimension), dtype=np.float32)
        for batch in self._batches([len(piece_ids) for piece_ids in ids]):
            width = max(len(ids[i]) for i in batch)
            input_ids = np.zeros((len(batch), width), dtype=np.int64)
            attention_mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                attention_mask[row, : len(ids[i])] = 1
            feed = {"input_ids": input_ids, "attention_mask": attention_mask}
            feed["token_type_ids"] = np.zeros_like(input_ids)
            vectors[batch] = self.session.run(None, feed)[0]
        return vectors
