"""Bulk ingest, old vs new: ``ray-rag ingest`` of the bulk set (real PDFs, bench/datasets.json), each side on a
fresh state folder, in one invocation.

Each side builds its embedder (ONNX export, int8 quantization) before its timed ingest: a one-time step.
Per side: wall seconds, pages/s, CPU busy share of all cores (/proc/stat deltas over the ingest: busy = total -
idle - iowait; machine-wide, so other load on the machine counts too), per-status counts (all must be
COMPLETED), lowest MemAvailable, Ray clusters seen, Dagster runs, and the seconds spent in each stage.
Speed-up = new pages/s ÷ old pages/s. A third side, the new code with MiniLM itself (``RAY_RAG_EMBEDDER=onnx``,
int8) instead of the default static model, shows what the transformer embedder costs (README, *Quality*).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import datasets
from bench.common import progress_line, ratio, scratch_dir
from bench.harness import (
    OLD_COMMIT,
    Side,
    completed_all,
    dagster_runs,
    new_side,
    old_side,
    run_ingest,
    stage_seconds,
    stop_state_processes,
)

TIMEOUT_SECONDS = 3 * 3600
QUICK_FILES = ["docling-multi_page.pdf", "tex-cite.pdf", "tex-newfloat.pdf"]


def pdfs(quick: bool) -> list[Path]:
    paths = datasets.fetch("bulk")
    return [p for p in paths if p.name in QUICK_FILES] if quick else paths


def ingest_side(side: Side, home: Path, paths: list[Path], cwd: Path, pages: int, label: str = "",
                env: dict[str, str] | None = None) -> dict[str, Any]:
    name = label or side.name
    with progress_line(f"{name}: ingest {len(paths)} PDFs", total=len(paths)) as update:
        def tick(counts: dict[str, int], seconds: float) -> None:
            done = counts.get("COMPLETED", 0) + counts.get("FAILED", 0)
            in_progress = counts.get("IN_PROGRESS", 0)
            update(completed=done, description=f"{name}: ingest {len(paths)} PDFs ({pages} pages): "
                   f"{counts.get('COMPLETED', 0)} completed, {counts.get('FAILED', 0)} failed, "
                   f"{in_progress} in progress")

        try:
            result = run_ingest(side, home, paths, cwd, TIMEOUT_SECONDS, on_tick=tick, env=env)
        finally:
            cleanup = stop_state_processes(home)
    result["pages_per_second"] = round(pages / result["wall_seconds"], 3)
    result["all_completed"] = completed_all(result["statuses"], len(paths))
    result["stage_seconds"] = stage_seconds(side, home, cwd)
    result["dagster"] = dagster_runs(home / "dagster")
    result["cleanup"] = cleanup
    stop_state_processes(home)  # `ray-rag status` may have joined or started something
    return result


def run(quick: bool) -> dict[str, Any]:
    paths = pdfs(quick)
    pages = datasets.pages_of(paths)
    with scratch_dir("bulk") as folder:
        new = new_side()
        with old_side(folder) as old:
            results = {}
            for side in (old, new):
                side.build_embedder(folder / f"{side.name}-home", folder)
                results[side.name] = ingest_side(side, folder / f"{side.name}-home", paths, folder, pages)
                time.sleep(5)  # let the machine settle between the sides
            if not quick:
                minilm = {"RAY_RAG_EMBEDDER": "onnx"}
                new.build_embedder(folder / "new-minilm-home", folder, minilm)
                results["new_minilm"] = ingest_side(new, folder / "new-minilm-home", paths, folder, pages,
                                                    "new, MiniLM int8 embedder", minilm)
    return {
        "documents": len(paths),
        "pages": pages,
        "data_set": datasets.describe("bulk") if not quick else {"documents": len(paths), "pages": pages},
        "old_commit": OLD_COMMIT,
        "new_code": str(new.code),
        "old": results["old"],
        "new": results["new"],
        "speedup_new_over_old": ratio(results["new"]["pages_per_second"], results["old"]["pages_per_second"]),
        **({"new_minilm": results["new_minilm"],
            "speedup_new_minilm_over_old": ratio(results["new_minilm"]["pages_per_second"],
                                                 results["old"]["pages_per_second"])}
           if "new_minilm" in results else {}),
    }
