"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, write results.json and REPORT.md.

``--only`` runs some benchmarks and keeps the others' earlier results in results.json.

Issue 8 (many documents at once), old code (commit cd27f23) vs the working tree, both in one invocation:
``--only bulk`` (``ray-rag ingest`` of 22 real PDFs / 743 pages, old and new), ``--only storm`` (50 real PDFs
dropped on ``ray-rag dev``, new code, vs ``ray-rag ingest`` of the same), ``--only overhead`` (pipeline vs
``compute.flow.run_stages`` on 100 small PDFs), ``--only backfill`` (one asset backfill of 1,000 tiny PDFs),
``--only soak [--documents N]`` (200 documents dropped in waves on ``ray-rag dev``, some replaced and deleted
mid-run: stuck documents and worker memory; the timeline in soak.json).
The real PDFs are fetched into ``~/.cache/ray-rag-bench`` (``python -m bench.datasets``; needs ``apt-get``).
Environment: ``RAY_RAG_BENCH_NEW_CODE`` (folder holding the new ``ray_rag_dagster``; default this repo),
``RAY_RAG_BENCH_CACHE``, ``RAY_RAG_PARTITIONS_PER_RUN`` (passed through to the new code).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench import (
    backfill, bulk, common, e2e, embedding, engines, extraction, memory, orchestration, overhead, reuse, scaling, search,
    soak, storm,
)
from bench.common import RESULTS_DIR, load_average
from bench.report import write_report

BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "extraction": extraction.run,
    "orchestration": orchestration.run,
    "scaling": scaling.run,
    "reuse": reuse.run,
    "embedding": embedding.run,
    "search": search.run,
    "e2e": e2e.run,
    "memory": memory.run,
    # Issue 8, many documents at once: old vs new orchestration (bench/harness.py, data sets in bench/datasets.py).
    "bulk": bulk.run,
    "storm": storm.run,
    "overhead": overhead.run,
    "backfill": backfill.run,
    "engines": engines.run,  # Ray core tasks (the flow) vs Ray Data streaming, same documents
    "soak": soak.run,  # 200 documents in waves, replaced and deleted files: stuck count, worker RSS
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small inputs: a smoke test, not a measurement")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for results.json, REPORT.md, plots")
    parser.add_argument("--documents", type=int, help=f"soak: documents to drop (default {soak.DOCUMENTS}, "
                        f"{soak.QUICK_DOCUMENTS} with --quick)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    console = Console()
    selected = [name for name in BENCHMARKS if not args.only or name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if args.only and results_path.is_file() else {}
    results.setdefault("benchmarks", {})
    failed = False
    columns = (
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with Progress(*columns, console=console) as progress:
        common.PROGRESS = progress
        overall = progress.add_task("benchmarks", total=len(selected))
        for name in selected:
            progress.update(overall, description=f"running {name}")
            before = load_average()
            started = time.perf_counter()
            try:
                options = {"documents": args.documents, "out": args.out} if name == "soak" else {}
                outcome: dict[str, Any] = BENCHMARKS[name](args.quick, **options)
            except Exception as exc:  # one broken benchmark should not lose the others' numbers
                failed = True
                outcome = {"error": f"{type(exc).__name__}: {exc}"}
                console.print(f"[red]{name} failed[/red]\n{traceback.format_exc()}")
            outcome["meta"] = {
                "seconds": round(time.perf_counter() - started, 1),
                "load_average_before": [round(v, 2) for v in before],
                "load_average_after": [round(v, 2) for v in load_average()],
                "quick": args.quick,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            results["benchmarks"][name] = outcome
            results["machine"] = {
                "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()
            }
            results_path.write_text(json.dumps(results, indent=2, default=str))
            progress.advance(overall)
            meta = outcome["meta"]
            console.print(f"{name}: done in {meta['seconds']} s (load {meta['load_average_before'][0]})")
    write_report(results, args.out)
    console.print(f"wrote {results_path} and {args.out / 'REPORT.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
