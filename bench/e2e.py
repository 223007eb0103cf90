"""6. End to end: a 10-page protocol dropped into the inbox with the Dagster daemon (sensor) running, until a
sentence from it is found by search and its status is COMPLETED.

The daemon runs as a subprocess with its own DAGSTER_HOME / RAY_RAG_HOME; the timeline comes from the
Dagster run record (created, started, ended) and from polling the status store and search.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import CDISC_PDF, in_child, pdf_text_pages, scratch_dir, write_page_subset

TIMEOUT_SECONDS = 900
PAGES = 10


def _probe_sentence(pdf: Path) -> str:
    """Twelve words of a sentence from the middle of the PDF, to search for."""
    import re

    pages = [" ".join(text.split()) for text in pdf_text_pages(pdf)]
    for text in pages[len(pages) // 2 :] + pages:
        for sentence in re.split(r"(?<=[.;:])\s+", text):
            words = sentence.split()
            probe = " ".join(words[:12])
            # body text, not a running header: found on one page only
            if len(words) >= 12 and sum(w.isalpha() for w in words) >= 9 and sum(probe in p for p in pages) == 1:
                return probe
    raise ValueError(f"{pdf}: no sentence to search for")


def _end_to_end(home: str, pdf: str) -> dict[str, Any]:
    import dagster as dg

    home_path = Path(home)
    dagster_home = home_path / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "RAY_RAG_HOME": str(home_path)}
    os.environ.update({"DAGSTER_HOME": env["DAGSTER_HOME"], "RAY_RAG_HOME": env["RAY_RAG_HOME"]})

    from ray_rag_dagster.backends import build_embedder, build_status_store
    from ray_rag_dagster.backends.status_store import COMPLETED
    from ray_rag_dagster.ids import document_id_for
    from ray_rag_dagster.search import search_index
    from ray_rag_dagster.settings import Settings

    settings = Settings(home=home_path)
    build_embedder(settings).embed_query("warm")  # the poller's own model load is not the pipeline's time
    probe = _probe_sentence(Path(pdf))
    key = f"input/{Path(pdf).name}"
    document_id = document_id_for(key)
    daemon_binary = Path(sys.executable).with_name("dagster-daemon")
    log = (home_path / "daemon.log").open("w")
    started = time.time()
    daemon = subprocess.Popen(
        [str(daemon_binary), "run", "-m", "ray_rag_dagster.defs"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    timeline: dict[str, float] = {}
    try:
        instance = dg.DagsterInstance.get()
        while "SENSOR" not in instance.get_daemon_heartbeats():
            if daemon.poll() is not None or time.time() - started > 120:
                raise RuntimeError(f"dagster-daemon did not start; see {home_path / 'daemon.log'}")
            time.sleep(0.5)
        timeline["daemon_ready"] = time.time() - started
        settings.inbox_dir.mkdir(parents=True, exist_ok=True)
        dropped = time.time()
        (settings.inbox_dir / Path(pdf).name).write_bytes(Path(pdf).read_bytes())
        status = build_status_store(settings)
        searchable = completed = None
        while time.time() - dropped < TIMEOUT_SECONDS and (searchable is None or completed is None):
            row = status.get(document_id)
            if completed is None and row is not None and row.status == COMPLETED:
                completed = time.time()
            if searchable is None and any(hit.document_id == document_id for hit in search_index(settings, probe, k=5)):
                searchable = time.time()
            if row is not None and row.status == "FAILED":
                raise RuntimeError(f"{key} failed: {row.error}")
            time.sleep(0.5)
        if searchable is None or completed is None:
            raise TimeoutError(f"{key} not searchable after {TIMEOUT_SECONDS} s")
        record = instance.get_run_records(limit=1)[0]
        run_created = record.create_timestamp.timestamp()
        return {
            "pages": PAGES,
            "probe": probe,
            "daemon_start_seconds": round(timeline["daemon_ready"], 1),
            "drop_to_searchable_seconds": round(searchable - dropped, 1),
            "drop_to_completed_seconds": round(completed - dropped, 1),
            "sensor_latency_seconds": round(run_created - dropped, 1),
            "queue_and_launch_seconds": round((record.start_time or run_created) - run_created, 1),
            "run_seconds": round((record.end_time or completed) - (record.start_time or run_created), 1),
            "run_end_to_searchable_seconds": round(searchable - (record.end_time or completed), 1),
            "run_status": record.dagster_run.status.value,
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


def run(quick: bool) -> dict[str, Any]:
    if quick:
        return {"skipped": "needs the daemon and a full pipeline run; not part of --quick"}
    with scratch_dir("e2e") as folder:
        pdf = write_page_subset(CDISC_PDF, folder / "docs" / "cdisc-first-10-pages.pdf", PAGES)
        return in_child(_end_to_end, str(folder / "home"), str(pdf))
