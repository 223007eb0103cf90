"""Ray core tasks (the pipeline's flow) vs Ray Data streaming, on the same documents and stage functions.

Both run outside Dagster on the shared local Ray, each in a fresh state folder, one after the other in one
invocation:

- ``core``: :func:`ray_rag_dagster.compute.flow.run_stages`: warm detached actors, one task per worker,
  ``ray.wait``, depth-first priorities (finish documents before starting new ones).
- ``ray_data``: ``ray.data.from_items(documents)`` → ``map_batches`` per stage (batch size 1), extraction
  and embedding in actor pools that keep their models, the light stages as tasks, load with concurrency 1;
  Ray Data's streaming executor applies backpressure between the operators.

Reported: wall seconds, pages/s, CPU use of all cores (/proc/stat), documents completed.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from bench.common import scratch_dir

STAGES = ("extract", "chunk", "enrich", "embed", "load")


def _cpu_times() -> tuple[float, float]:
    fields = [float(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def cpu_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    total, idle = after[0] - before[0], after[1] - before[1]
    return round((total - idle) / total, 3) if total else 0.0


def _documents(settings: Any, pdfs: list[Path]) -> list[Any]:
    from ray_rag_dagster.backends import build_object_store
    from ray_rag_dagster.ids import document_id_for, version_of
    from ray_rag_dagster.stages.manifest import DocumentRef

    store = build_object_store(settings)
    documents = []
    for path in pdfs:
        data = path.read_bytes()
        key = f"input/{path.name}"
        store.put_bytes(key, data)
        version = version_of(hashlib.md5(data).hexdigest())
        documents.append(DocumentRef(document_id=document_id_for(key), version=version, source_key=key))
    return documents


def run_core(settings: Any, documents: list[Any]) -> int:
    from ray_rag_dagster.compute.flow import run_stages

    return sum(1 for result in run_stages(settings, documents) if result.stage == "load" and result.status == "ok")


class _ExtractActor:
    """Holds the docling converter (the stage's per-process cache) across documents."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ray_rag_dagster.stages.extract import merge_extract, plan_extract, run_extract

        documents = [_ref(row) for row in batch["document"]]
        for settings, document in zip(batch["settings"], documents, strict=True):
            parts = [run_extract(settings, document, page_range) for page_range in plan_extract(settings, document)]
            merge_extract(settings, document, parts)
        return batch


class _EmbedActor:
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ray_rag_dagster.stages.embed import run_embed

        for settings, row in zip(batch["settings"], batch["document"], strict=True):
            run_embed(settings, _ref(row))
        return batch


def _ref(row: Any) -> Any:
    from ray_rag_dagster.stages.manifest import DocumentRef

    return DocumentRef.model_validate(dict(row))


def _stage_task(name: str):  # type: ignore[no-untyped-def]
    def run(batch: dict[str, Any]) -> dict[str, Any]:
        from ray_rag_dagster.stages.chunk import run_chunk
        from ray_rag_dagster.stages.enrich import run_enrich
        from ray_rag_dagster.stages.load import run_load

        function = {"chunk": run_chunk, "enrich": run_enrich, "load": run_load}[name]
        for settings, row in zip(batch["settings"], batch["document"], strict=True):
            function(settings, _ref(row))
        return batch

    return run


def run_ray_data(settings: Any, documents: list[Any]) -> int:
    import ray
    import ray.data

    from ray_rag_dagster.compute.cluster import connect

    connect(settings)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    cpus = int(ray.cluster_resources().get("CPU", 2))
    items = [{"document": document.model_dump(), "settings": settings} for document in documents]
    data = ray.data.from_items(items, override_num_blocks=len(items))
    # Resources add up to the cluster's CPUs: extraction (the heavy stage) gets most, embedding one actor.
    data = data.map_batches(_ExtractActor, batch_size=1, num_cpus=max(cpus - 0.5, 0.5) / max(cpus - 1, 1),
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(cpus - 1, 1)),
                            batch_format="numpy")
    data = data.map_batches(_stage_task("chunk"), batch_size=1, num_cpus=0, batch_format="numpy")
    data = data.map_batches(_stage_task("enrich"), batch_size=1, num_cpus=0, batch_format="numpy")
    data = data.map_batches(_EmbedActor, batch_size=1, num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=1),
                            batch_format="numpy")
    # One writer: loads serialise on the index's lock anyway.
    data = data.map_batches(_stage_task("load"), batch_size=1, num_cpus=0,
                            compute=ray.data.TaskPoolStrategy(size=1), batch_format="numpy")
    return sum(1 for _ in data.iter_rows())


def run(quick: bool, pdfs: list[Path] | None = None) -> dict[str, Any]:
    """Both engines on ``pdfs`` (default: the 8 shortest PDFs of the bulk set; quick: 3 docling test PDFs),
    fresh state each, in one invocation."""
    from bench.common import DOCLING_PDFS
    from bench.datasets import fetch
    from ray_rag_dagster.settings import Settings

    if pdfs is None:
        pdfs = sorted(DOCLING_PDFS.glob("*.pdf"))[:3] if quick else sorted(fetch("bulk"), key=lambda p: p.stat().st_size)[:8]
    pages = _page_count(pdfs)
    from ray_rag_dagster.compute.cluster import connect
    from ray_rag_dagster.compute.workers import stop_workers

    rows = []
    for engine, runner in (("core", run_core), ("ray_data", run_ray_data)):
        with scratch_dir(f"engine-{engine}") as home:
            connect(Settings(home=home))
            stop_workers()  # both start cold, and Ray Data gets the CPUs the warm workers would hold
            os.environ["RAY_RAG_HOME"] = str(home)
            settings = Settings(home=home)
            documents = _documents(settings, pdfs)
            before, started = _cpu_times(), time.perf_counter()
            completed = runner(settings, documents)
            wall = time.perf_counter() - started
            rows.append({"engine": engine, "documents": len(pdfs), "completed": completed, "pages": pages,
                         "seconds": round(wall, 1), "pages_per_second": round(pages / wall, 2),
                         "cpu_share": cpu_share(before, _cpu_times())})
    core, data = rows
    return {"rows": rows, "core_speedup_vs_ray_data": round(data["seconds"] / core["seconds"], 2)}


def _page_count(pdfs: list[Path]) -> int:
    import pypdfium2 as pdfium

    total = 0
    for path in pdfs:
        pdf = pdfium.PdfDocument(str(path))
        total += len(pdf)
        pdf.close()
    return total


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
