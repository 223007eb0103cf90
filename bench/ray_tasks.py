"""Functions that run inside Ray workers. Shipped by value (the bench folder is not installed)."""

from __future__ import annotations

import os
import time
from typing import Any


def extract_document(data: bytes, name: str, page_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """Extract on a worker; report where it ran and whether the converter was already loaded there."""
    from ray_rag_dagster.stages import docling_convert

    loaded_before = bool(docling_convert._converters)
    started = time.perf_counter()
    result = docling_convert.extract_pdf(data, name, page_range=page_range)
    return {
        "pid": os.getpid(),
        "converter_loaded_before": loaded_before,
        "seconds": time.perf_counter() - started,
        "pages": [page.model_dump() for page in result.pages],
        "page_count": len(result.pages),
    }


def embed_chunks(texts: list[str], backend: str, models_dir: str) -> dict[str, Any]:
    """Embed on a worker with the torch or ONNX embedder; report whether its model was already loaded there."""
    from pathlib import Path

    from ray_rag_dagster.backends import embedder as torch_embedder
    from ray_rag_dagster.backends import onnx_embedder

    if backend == "onnx":
        loaded_before = onnx_embedder._load_runtime.cache_info().currsize > 0
        started = time.perf_counter()
        model: torch_embedder.Embedder = onnx_embedder.OnnxEmbedder(Path(models_dir))
    else:
        loaded_before = torch_embedder._load_sentence_transformer.cache_info().currsize > 0
        started = time.perf_counter()
        model = torch_embedder.LocalEmbedder()
    model.embed_documents(texts)
    return {"pid": os.getpid(), "model_loaded_before": loaded_before, "seconds": time.perf_counter() - started}


def worker_peak_rss_mb() -> float:
    """Peak RSS (VmHWM) of an idle Ray worker process. Self-contained: the bench folder is not importable there."""
    from pathlib import Path

    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


def start_ray(num_cpus: int) -> Any:
    """A fresh private Ray with ``num_cpus`` CPUs; this module's functions shipped to workers by value."""
    import sys

    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    os.environ.update(env)
    ray.init(
        address="local",
        num_cpus=num_cpus,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": env},
    )
    return ray
