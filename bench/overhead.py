"""Orchestration overhead of the new code: the Dagster pipeline vs direct stage calls on the same warm Ray.

100 small generated PDFs (1–2 pages, bench/generated.py) in four groups of 25. One process of the new code
(bench/flow_child.py, ``interleaved``) on one state folder, so both paths use the same shared Ray and the same
warm workers: a warm-up of each path first, then direct, pipeline, pipeline, direct, each on its own group.
Direct = ``ray_rag_dagster.compute.flow.run_stages`` (no Dagster); pipeline = ``ray_rag_dagster.ingest.ingest_paths``
(what ``ray-rag ingest`` runs: Dagster runs of batches of partitions). Ratio = pipeline seconds ÷ direct seconds
over the same number of documents (target ≤ 1.10).

For reference, the old code's per-document overhead on 10 of the same documents (bench/orchestration.py's
method: the five stage functions in a loop in one process vs ``ingest_paths``, one Dagster run and a private
Ray per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import progress_line, ratio, scratch_dir
from bench.generated import write_small_pdfs
from bench.harness import TIMEOUT_SECONDS, new_side, old_side, require_direct_path, run_flow_child, stop_state_processes

DOCUMENTS, GROUPS = 100, 4
QUICK_DOCUMENTS = 8
OLD_REFERENCE_DOCUMENTS, QUICK_OLD_REFERENCE_DOCUMENTS = 10, 2


def old_reference(folder: Path, documents: list[Path], warmup: Path) -> dict[str, Any]:
    """bench/orchestration.py's direct and pipeline functions, run on the old code."""
    with old_side(folder) as old:
        results = {}
        for kind in ("direct", "pipeline"):
            home = folder / f"old-{kind}-home"
            old.prepare_home(home)
            out = folder / f"old-{kind}.json"
            code = (f"import json, sys; from bench.orchestration import _{kind} as f; "
                    f"json.dump(f({str(home)!r}, {str(warmup)!r}, {[str(p) for p in documents]!r}), "
                    f"open({str(out)!r}, 'w'))")
            log = folder / f"old-{kind}.log"
            try:
                with log.open("w") as handle:
                    completed = subprocess.run([sys.executable, "-c", code], env=old.env(home),
                                               cwd=folder, stdout=handle, stderr=subprocess.STDOUT,
                                               timeout=TIMEOUT_SECONDS)
            finally:
                stop_state_processes(home)
            if completed.returncode != 0:
                raise RuntimeError(f"old {kind} failed: {log.read_text(errors='replace')[-2000:]}")
            results[kind] = json.loads(out.read_text())
    direct, pipeline = results["direct"], results["pipeline"]
    return {
        "documents": len(documents),
        "direct_seconds": round(direct["documents_seconds"], 2),
        "pipeline_seconds": round(pipeline["documents_seconds"], 2),
        "ratio_pipeline_over_direct": ratio(pipeline["documents_seconds"], direct["documents_seconds"]),
        "overhead_seconds_per_document": round(
            (pipeline["documents_seconds"] - direct["documents_seconds"]) / len(documents), 2),
        "statuses": sorted(set(direct["statuses"]) | set(pipeline["statuses"])),
        "note": "old direct = the stage functions in the benchmark's own process (no Ray); "
                "old pipeline = one Dagster run per document on a private Ray",
    }


def run(quick: bool) -> dict[str, Any]:
    count = QUICK_DOCUMENTS if quick else DOCUMENTS
    side = new_side()
    require_direct_path(side)  # fail fast: the comparison needs the new core's direct entry point
    with scratch_dir("overhead") as folder:
        docs = write_small_pdfs(folder / "docs", count, prefix="overhead")
        warmup = write_small_pdfs(folder / "warmup", 4, prefix="warmup")
        result: dict[str, Any] = {"documents": count, "groups": GROUPS, "new_code": str(side.code)}
        reference_docs = docs[: QUICK_OLD_REFERENCE_DOCUMENTS if quick else OLD_REFERENCE_DOCUMENTS]
        with progress_line(f"overhead: old code reference, {len(reference_docs)} documents per side"):
            try:
                result["old_reference"] = old_reference(folder, reference_docs, warmup[0])
            except Exception as exc:  # noqa: BLE001 - a reference only; the new numbers still count
                result["old_reference"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        size = count // GROUPS
        groups = [[str(p) for p in docs[i * size:(i + 1) * size]] for i in range(GROUPS)]
        spec = {"mode": "interleaved", "warmup": [[str(warmup[0]), str(warmup[1])], [str(warmup[2]), str(warmup[3])]],
                "groups": groups}
        with progress_line(f"overhead: new code, direct/pipeline interleaved over {count} documents"):
            # Worker recycling (docling's memory growth, measured by the soak) is switched off here: a recycle
            # costs a converter load wherever it falls, and would land on one path's group, not the other's.
            child = run_flow_child(side, folder / "new-home", folder, spec, "new-interleaved",
                                   env={"RAY_RAG_EXTRACT_MAX_CALLS": "100000"})
    rounds = child["rounds"]
    direct = sum(r["seconds"] for r in rounds if r["path"] == "direct")
    pipeline = sum(r["seconds"] for r in rounds if r["path"] == "pipeline")
    pipeline_docs = sum(r["documents"] for r in rounds if r["path"] == "pipeline")
    result.update({
        "warmup": child["warmup"],
        "rounds": rounds,
        "direct_seconds": round(direct, 2),
        "pipeline_seconds": round(pipeline, 2),
        "ratio_pipeline_over_direct": ratio(pipeline, direct),
        "target_ratio": 1.10,
        "overhead_seconds_per_document": round((pipeline - direct) / pipeline_docs, 3) if pipeline_docs else None,
        "all_completed": all(r.get("statuses", {"COMPLETED": 1}).keys() <= {"COMPLETED"} and not r.get("failures")
                             for r in rounds),
    })
    return result
