"""3. Scaling on Ray: (a) a batch of documents with 1 vs 2 CPUs; (b) one long protocol as page-range shards.

Each configuration runs in a fresh process with a fresh private Ray; workers are warmed (one concurrent
warm-up task per CPU) before timing, so the numbers compare steady-state throughput.
"""

from __future__ import annotations

import difflib
import statistics
from pathlib import Path
from typing import Any

from bench.common import CDISC_PDF, DOCLING_PDFS, Stopwatch, in_child, ratio, scratch_dir

WARMUP_PDF = DOCLING_PDFS / "2305.03393v1-pg9.pdf"


def _warm(ray: Any, task: Any, workers: int) -> None:
    data = WARMUP_PDF.read_bytes()
    ray.get([task.remote(data, WARMUP_PDF.name) for _ in range(workers)])


def _batch(num_cpus: int, paths: list[str]) -> dict[str, Any]:
    from bench import ray_tasks

    ray = ray_tasks.start_ray(num_cpus)
    task = ray.remote(num_cpus=1)(ray_tasks.extract_document)
    _warm(ray, task, num_cpus)
    watch = Stopwatch()
    results = ray.get([task.remote(Path(p).read_bytes(), Path(p).name) for p in paths])
    seconds = watch.seconds
    ray.shutdown()
    pages = sum(r["page_count"] for r in results)
    return {"seconds": seconds, "pages": pages, "workers": len({r["pid"] for r in results})}


def shard_ranges(pages: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous 1-based inclusive page ranges of near-equal size covering 1..pages."""
    size, extra = divmod(pages, shards)
    ranges, start = [], 1
    for index in range(shards):
        end = start + size + (1 if index < extra else 0) - 1
        if end >= start:
            ranges.append((start, end))
        start = end + 1
    return ranges


def _sharded(path: str, pages: int, shard_counts: list[int]) -> dict[str, Any]:
    from bench import ray_tasks

    ray = ray_tasks.start_ray(2)
    task = ray.remote(num_cpus=1)(ray_tasks.extract_document)
    _warm(ray, task, 2)
    data = Path(path).read_bytes()
    name = Path(path).name
    watch = Stopwatch()
    single = ray.get(task.remote(data, name, (1, pages)))
    single_seconds = watch.seconds
    reference = [page["markdown"] for page in single["pages"]]
    out: dict[str, Any] = {"pages": pages, "single_task_seconds": single_seconds, "shards": []}
    for shards in shard_counts:
        watch = Stopwatch()
        parts = ray.get([task.remote(data, name, r) for r in shard_ranges(pages, shards)])
        seconds = watch.seconds
        merged = [page["markdown"] for part in parts for page in part["pages"]]  # in page order
        differing = [i + 1 for i, (a, b) in enumerate(zip(reference, merged, strict=True)) if a != b]
        out["shards"].append(
            {
                "shards": shards,
                "seconds": seconds,
                "speedup": ratio(single_seconds, seconds),
                "pages_equal": pages - len(differing),
                "differing_pages": differing,
                "differing_similarity": [
                    round(difflib.SequenceMatcher(None, reference[p - 1], merged[p - 1]).ratio(), 4) for p in differing
                ],
            }
        )
    ray.shutdown()
    return out


def run(quick: bool) -> dict[str, Any]:
    from ray_rag_dagster.samples import write_samples

    with scratch_dir("scaling") as folder:
        paths = [str(p) for p in sorted(DOCLING_PDFS.glob("*.pdf"))] + [str(p) for p in write_samples(folder)]
        if quick:
            paths = paths[:2]
        batch = {n: in_child(_batch, n, paths) for n in (1, 2)}
    pages = 8 if quick else 97
    sharding = in_child(_sharded, str(CDISC_PDF), pages, [2] if quick else [2, 4])
    best = max(sharding["shards"], key=lambda s: s["speedup"] or 0)
    return {
        "batch": {
            "documents": len(paths),
            "pages": batch[1]["pages"],
            "seconds_1_cpu": batch[1]["seconds"],
            "seconds_2_cpus": batch[2]["seconds"],
            "workers_used": {"1": batch[1]["workers"], "2": batch[2]["workers"]},
            "speedup_2_over_1": ratio(batch[1]["seconds"], batch[2]["seconds"]),
        },
        "sharding": sharding,
        "sharding_pays": bool(best["speedup"] and best["speedup"] >= 1.2),
        "best_shard_speedup": best["speedup"],
        "median_shard_page_similarity": (
            statistics.median(best["differing_similarity"]) if best["differing_similarity"] else 1.0
        ),
    }
