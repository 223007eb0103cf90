"""7. Peak memory per stage: each stage function runs once, for one real protocol, in a fresh spawned process;
its peak RSS (VmHWM) is reported, beside the baseline of a process that only imported the stages and
of an idle Ray worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import LILLY_PDF, in_child, md5_of, peak_rss_mb, scratch_dir, write_page_subset


def _import_baseline() -> float:
    import ray_rag_dagster.stages.chunk  # noqa: F401
    import ray_rag_dagster.stages.embed  # noqa: F401
    import ray_rag_dagster.stages.enrich  # noqa: F401
    import ray_rag_dagster.stages.extract  # noqa: F401
    import ray_rag_dagster.stages.load  # noqa: F401

    return peak_rss_mb()


def _stage(home: str, stage: str, document: dict[str, str], input_key: str) -> dict[str, Any]:
    from ray_rag_dagster.settings import Settings
    from ray_rag_dagster.stages.chunk import run_chunk
    from ray_rag_dagster.stages.embed import run_embed
    from ray_rag_dagster.stages.enrich import run_enrich
    from ray_rag_dagster.stages.extract import merge_extract, run_extract
    from ray_rag_dagster.stages.load import run_load
    from ray_rag_dagster.stages.manifest import DocumentRef

    def extract(settings: Settings, document: DocumentRef, key: str) -> Any:  # one task, whole document
        return merge_extract(settings, document, [run_extract(settings, document, key)])

    functions = {"extract": extract, "chunk": run_chunk, "enrich": run_enrich, "embed": run_embed, "load": run_load}
    started = time.perf_counter()
    output = functions[stage](Settings(home=Path(home)), DocumentRef(**document), input_key)
    return {
        "stage": stage,
        "peak_rss_mb": peak_rss_mb(),
        "seconds": round(time.perf_counter() - started, 2),
        "output_key": output.key,
        "counts": {k: v for k, v in output.counts.items() if k in ("pages", "chunks", "vectors", "tokens")},
    }


def _onnx_embed(home: str, enriched_key: str, max_batch_tokens: int | None = None) -> dict[str, Any]:
    """The embed stage's work with the OnnxEmbedder (graph exported beforehand, in another process)."""
    from ray_rag_dagster.backends import build_object_store
    from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder
    from ray_rag_dagster.settings import Settings

    settings = Settings(home=Path(home))
    started = time.perf_counter()
    texts = [chunk["text"] for chunk in build_object_store(settings).get_jsonl(enriched_key)]
    options = {} if max_batch_tokens is None else {"max_batch_tokens": max_batch_tokens}
    OnnxEmbedder(settings.home / "models", **options).embed_documents(texts)
    return {
        "stage": "embed (OnnxEmbedder)" if max_batch_tokens is None else "embed (OnnxEmbedder, no token budget)",
        "peak_rss_mb": peak_rss_mb(),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _export(models_dir: str) -> None:
    from ray_rag_dagster.backends.onnx_embedder import ensure_onnx_model

    ensure_onnx_model(Path(models_dir), "all-MiniLM-L6-v2")


def _ray_worker_baseline() -> float:
    from bench import ray_tasks

    ray = ray_tasks.start_ray(1)
    rss = ray.get(ray.remote(num_cpus=1)(ray_tasks.worker_peak_rss_mb).remote())
    ray.shutdown()
    return rss


def run(quick: bool) -> dict[str, Any]:
    from ray_rag_dagster.ids import document_id_for, version_of
    from ray_rag_dagster.settings import Settings

    with scratch_dir("memory") as folder:
        pdf = write_page_subset(LILLY_PDF, folder / "lilly-3-pages.pdf", 3) if quick else LILLY_PDF
        home = folder / "home"
        settings = Settings(home=home)
        key = f"input/{pdf.name}"
        settings.inbox_dir.mkdir(parents=True, exist_ok=True)
        (settings.inbox_dir / pdf.name).write_bytes(pdf.read_bytes())
        document = {"document_id": document_id_for(key), "version": version_of(md5_of(pdf)), "source_key": key}
        stages = []
        input_key = key
        for stage in ("extract", "chunk", "enrich", "embed", "load"):
            result = in_child(_stage, str(home), stage, document, input_key)
            stages.append(result)
            if stage == "enrich":
                enriched_key = result["output_key"]
            input_key = result["output_key"]
        in_child(_export, str(home / "models"))
        stages.insert(4, in_child(_onnx_embed, str(home), enriched_key))
        stages.insert(5, in_child(_onnx_embed, str(home), enriched_key, 10**9))  # the first version, for comparison
        baseline_mb = in_child(_import_baseline)
        worker_mb = in_child(_ray_worker_baseline)
    for row in stages:
        row["above_import_baseline_mb"] = round(row["peak_rss_mb"] - baseline_mb, 1)
    return {
        "document": pdf.name,
        "import_baseline_mb": baseline_mb,
        "ray_worker_idle_mb": worker_mb,
        "stages": stages,
    }
