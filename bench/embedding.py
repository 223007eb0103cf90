"""5a. Embedding throughput (chunks/s) on ~1000–1500-character chunks of a clinical protocol.

All variants run in one fresh process, interleaved over rounds (best round kept), on the same chunks:
the project's LocalEmbedder (torch), the OnnxEmbedder (same model exported to ONNX, length-sorted batches),
int8 dynamic quantisation of that graph, and thread and batch-size settings. Vectors are compared with the
torch ones (cosine) and by nearest-neighbour agreement, which is what retrieval depends on.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CDISC_PDF, Stopwatch, chunks_of, in_child, ratio, scratch_dir

MODEL = "all-MiniLM-L6-v2"


def _int8_models_dir(models_dir: Path) -> Path:
    """A models folder whose ONNX graph is the int8 dynamically quantised one (same tokenizer and config)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ray_rag_dagster.backends.onnx_embedder import ensure_onnx_model, onnx_model_files

    fp32 = ensure_onnx_model(models_dir, MODEL)
    int8 = onnx_model_files(models_dir.parent / "models-int8", MODEL)
    int8.folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(fp32.tokenizer, int8.tokenizer)
    shutil.copy(fp32.config, int8.config)
    quantize_dynamic(str(fp32.model), str(int8.model), weight_type=QuantType.QInt8)
    return int8.folder.parent


def _neighbour_agreement(reference: np.ndarray, other: np.ndarray, k: int = 5) -> float:
    """Mean share of each chunk's k nearest chunks that both vector sets agree on."""
    def top(vectors: np.ndarray) -> np.ndarray:
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :k]

    a, b = top(reference), top(other)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def _measure(models_dir: str, texts: list[str], rounds: int) -> dict[str, Any]:
    import torch

    from ray_rag_dagster.backends.embedder import LocalEmbedder
    from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder

    folder = Path(models_dir)
    watch = Stopwatch()
    OnnxEmbedder(folder, MODEL)  # the one-time build step: export to ONNX
    export_seconds = watch.seconds
    int8_dir = _int8_models_dir(folder)

    def torch_variant(threads: int, batch: int):  # type: ignore[no-untyped-def]
        model = LocalEmbedder(MODEL, batch)

        def embed(chunks: list[str]) -> np.ndarray:
            torch.set_num_threads(threads)
            return model.embed_documents(chunks).vectors

        return embed

    def onnx_variant(  # type: ignore[no-untyped-def]
        threads: int, batch: int, models: Path = folder, max_batch_tokens: int = 2048
    ):
        model = OnnxEmbedder(models, MODEL, batch_size=batch, num_threads=threads, max_batch_tokens=max_batch_tokens)
        return lambda chunks: model.embed_documents(chunks).vectors

    variants = {
        "torch, 1 thread, batch 32 (LocalEmbedder)": torch_variant(1, 32),
        "onnx fp32, 1 thread, batch 32 (OnnxEmbedder)": onnx_variant(1, 32),
        "torch, 2 threads, batch 32": torch_variant(2, 32),
        "onnx fp32, 2 threads, batch 32": onnx_variant(2, 32),
        "onnx fp32, 1 thread, batch 32, no token budget (first version)": onnx_variant(1, 32, max_batch_tokens=10**9),
        "onnx fp32, 1 thread, batch 8": onnx_variant(1, 8),
        "onnx int8, 1 thread, batch 32": onnx_variant(1, 32, int8_dir),
    }
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for embed in variants.values():
        embed(texts[:4])  # warm: first-call allocations, thread pools
    for _ in range(rounds):
        for name, embed in variants.items():
            watch = Stopwatch()
            vectors[name] = embed(texts)
            best[name] = min(best.get(name, float("inf")), watch.seconds)
    torch.set_num_threads(1)
    reference = vectors[next(iter(variants))]
    baseline = len(texts) / best[next(iter(variants))]
    rows = []
    for name in variants:
        cosines = np.sum(vectors[name] * reference, axis=1)
        rate = len(texts) / best[name]
        rows.append(
            {
                "variant": name,
                "chunks_per_second": round(rate, 2),
                "speedup_vs_torch_1_thread": ratio(rate, baseline),
                "cosine_min": round(float(cosines.min()), 5),
                "cosine_mean": round(float(cosines.mean()), 5),
                "top5_neighbour_agreement": round(_neighbour_agreement(reference, vectors[name]), 4),
            }
        )
    return {"export_seconds": round(export_seconds, 1), "variants": rows}


def run(quick: bool) -> dict[str, Any]:
    chunks = chunks_of(CDISC_PDF)
    texts = chunks[: 24 if quick else 160]
    with scratch_dir("embedding") as folder:
        measured = in_child(_measure, str(folder / "models"), texts, 1 if quick else 3)
    sizes = [len(t) for t in texts]
    return {
        "chunks": len(texts),
        "chunk_chars": {"min": min(sizes), "mean": round(sum(sizes) / len(sizes)), "max": max(sizes)},
        **measured,
    }
