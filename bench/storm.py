"""Storm: 50 real PDFs dropped into the inbox at once while ``ray-rag dev`` runs (new code only).

``ray-rag dev --port <free>`` starts on a fresh state folder (its own session; stopped by PID with SIGTERM, then
waited for). Once the webserver answers and the sensor's daemon is up, the storm set (bench/datasets.json) is
staged in the state folder and renamed into the inbox within milliseconds; the harness then polls the status store
until every document is COMPLETED or FAILED, sampling every 0.5 s: MemAvailable/MemTotal (minimum, %), the
number of Ray clusters on the machine (``gcs_server`` processes, maximum) and the Dagster runs launched.
``drop_to_all_completed_seconds`` ends when the last document turned COMPLETED: its vectors are in the index
(load is the last stage), so it is searchable.

In the same invocation ``ray-rag ingest`` of the same 50 PDFs on another fresh state folder gives the
reference: storm time ÷ ingest time (target ≤ 1.2).

The old code is not run here: with 10 PDFs it took 556 s, started 10 private Ray clusters (40 workers),
MemAvailable fell from 23 GB to 2 GB and one load failed on a LanceDB commit conflict (facts.md). Those are
the "before" numbers in the report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench import datasets
from bench.common import progress_line, ratio, scratch_dir
from bench.harness import (
    Watch, dagster_runs, latest_rows, runs_in_flight, new_side, run_ingest, start_dev, status_counts, stop_service,
    stop_state_processes, wait_daemon,
)

TIMEOUT_SECONDS = 40 * 60
QUICK_DOCUMENTS = 3
BEFORE = {  # facts.md, "The pipeline under many documents": old code, 10 PDFs dropped with `ray-rag dev` running
    "documents": 10,
    "drop_to_all_ended_seconds": 556,
    "ray_clusters": 10,
    "ray_workers": 40,
    "mem_available_gb_start": 23,
    "mem_available_gb_min": 2,
    "failed": 1,
    "failure": "lance error: Retryable commit conflict (CreateIndex preempted by a concurrent CreateIndex)",
}


def pdfs(quick: bool) -> list[Path]:
    paths = datasets.fetch("storm")
    return sorted(paths, key=lambda p: p.stat().st_size)[:QUICK_DOCUMENTS] if quick else paths


def drop_storm(home: Path, paths: list[Path], folder: Path, update: Any) -> dict[str, Any]:
    side = new_side()
    started = time.time()
    dev, port, ready = start_dev(side, home, folder, "storm")
    result: dict[str, Any] = {"port": port, "webserver_ready_seconds": round(ready, 1)}
    try:
        wait_daemon(home, "SENSOR", dev)
        result["daemon_ready_seconds"] = round(time.time() - started, 1)
        inbox = home / "objects" / "input"
        inbox.mkdir(parents=True, exist_ok=True)
        # Stage the copies outside the object store on the same file system, then rename them all in: one drop.
        staging = home / "storm-staging"
        staging.mkdir(exist_ok=True)
        staged = []
        for path in paths:
            part = staging / path.name
            part.write_bytes(path.read_bytes())
            staged.append((part, inbox / path.name))
        watch = Watch(home)
        dropped = time.time()
        for part, final in staged:
            os.replace(part, final)
        result["drop_seconds"] = round(time.time() - dropped, 3)
        counts: dict[str, int] = {}
        completed, last_completed = 0, None
        while time.time() - dropped < TIMEOUT_SECONDS:
            watch.sample()
            counts = status_counts(home)
            if counts.get("COMPLETED", 0) > completed:
                completed, last_completed = counts["COMPLETED"], time.time()
            done = counts.get("COMPLETED", 0) + counts.get("FAILED", 0)
            update(completed=done, description=f"storm: {len(paths)} PDFs dropped; {counts.get('COMPLETED', 0)} "
                   f"completed, {counts.get('FAILED', 0)} failed, {counts.get('IN_PROGRESS', 0)} in progress")
            if done >= len(paths) and sum(counts.values()) >= len(paths):
                break
            if dev.poll() is not None:
                raise RuntimeError(f"ray-rag dev exited ({dev.returncode}); see {folder / 'storm-dev.log'}")
            time.sleep(watch.interval)
        else:
            result["timed_out"] = True
        ended = time.time()
        # The runs end a little after their documents (asset checks run after load): let them finish before
        # stopping `ray-rag dev`, or they are counted as interrupted.
        while runs_in_flight(home / "dagster") and time.time() - ended < 300:
            time.sleep(1)
        result["drop_to_runs_ended_seconds"] = round(time.time() - dropped, 1)
        result.update({
            "statuses": counts,
            "drop_to_all_ended_seconds": round(ended - dropped, 1),
            # first poll (every 0.5 s) that saw the last COMPLETED document
            "drop_to_all_completed_seconds": round(last_completed - dropped, 1) if last_completed else None,
            "failed": [{"source": row["source_key"], "error": row["error"]}
                       for row in latest_rows(home) if row["status"] == "FAILED"],
            # searchable: COMPLETED with vectors in the index (the status row's vector count, written by load)
            "completed_with_vectors": sum(1 for row in latest_rows(home)
                                          if row["status"] == "COMPLETED" and (row.get("vectors") or 0) > 0),
            **watch.summary(),
        })
    finally:
        result["stop"] = stop_service(dev)
        result["cleanup"] = stop_state_processes(home)
    result["dagster"] = dagster_runs(home / "dagster")
    if result.get("timed_out") or result["failed"]:
        result["dev_log_tail"] = (folder / "storm-dev.log").read_text(errors="replace")[-3000:]
    return result


def run(quick: bool) -> dict[str, Any]:
    paths = pdfs(quick)
    pages = datasets.pages_of(paths)
    with scratch_dir("storm") as folder:
        for state in ("storm-home", "ingest-home"):
            new_side().build_embedder(folder / state, folder)
        with progress_line(f"storm: {len(paths)} PDFs", total=len(paths)) as update:
            storm = drop_storm(folder / "storm-home", paths, folder, update)
        time.sleep(5)
        with progress_line(f"ingest: {len(paths)} PDFs", total=len(paths)) as update:
            def tick(counts: dict[str, int], seconds: float) -> None:
                update(completed=counts.get("COMPLETED", 0) + counts.get("FAILED", 0),
                       description=f"ingest of the storm set: {counts.get('COMPLETED', 0)} completed")

            home = folder / "ingest-home"
            side = new_side()
            try:
                ingest = run_ingest(side, home, paths, folder, TIMEOUT_SECONDS, on_tick=tick)
            finally:
                ingest_cleanup = stop_state_processes(home)
            ingest["dagster"] = dagster_runs(home / "dagster")
            ingest["cleanup"] = ingest_cleanup
    storm_seconds = storm.get("drop_to_all_completed_seconds") or storm["drop_to_all_ended_seconds"]
    return {
        "documents": len(paths),
        "pages": pages,
        "data_set": datasets.describe("storm") if not quick else {"documents": len(paths), "pages": pages},
        "new_code": str(new_side().code),
        "storm": storm,
        "ingest": ingest,
        "storm_over_ingest": ratio(storm_seconds, ingest["wall_seconds"]),
        "target_storm_over_ingest": 1.2,
        "before_old_code": BEFORE,
    }
