"""Helpers shared by the fault tests: run ``ray-rag ingest`` or a Dagster run as a child process, find busy
stage workers, list what the pipeline left for a document, and wait on state without sleeping blindly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg

from ray_rag_dagster.backends import build_object_store
from ray_rag_dagster.compute.cluster import LocalCluster
from ray_rag_dagster.defs import build_definitions
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from tests.conftest import CLUSTER_DIR

T = TypeVar("T")

# A Dagster run of one partition in a process of its own, as the run launcher starts one.
_RUN_ONE_PARTITION = """
import json, sys
import dagster as dg
from ray_rag_dagster.dagster_home import prepare_dagster_home
from ray_rag_dagster.defs import build_definitions
from ray_rag_dagster.settings import Settings

settings = Settings()
prepare_dagster_home(settings)
job = build_definitions(settings).resolve_job_def("ingest_documents")
job.execute_in_process(instance=dg.DagsterInstance.get(), partition_key=sys.argv[1], tags=json.loads(sys.argv[2]),
                       raise_on_error=False)
"""


def wait_for(condition: Callable[[], T], what: str, timeout: float = 240, every: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_ingest(*paths: Path) -> subprocess.Popen[bytes]:
    """``ray-rag ingest`` in a child process (the environment, the state folder included, is inherited)."""
    return subprocess.Popen([sys.executable, "-m", "ray_rag_dagster.launcher", "ingest", *map(str, paths)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})


def start_run(partition_key: str, tags: dict[str, str]) -> subprocess.Popen[bytes]:
    """A Dagster run of the ingest job for one partition, in a child process."""
    return subprocess.Popen([sys.executable, "-c", _RUN_ONE_PARTITION, partition_key, json.dumps(tags)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The parent pid is the 2nd field after the parenthesised command name.
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    return children


def busy_stage_workers() -> list[int]:
    """Pids of this session's stage workers running a call now (Ray titles an actor's process by the method
    it runs). Only processes under this session's Ray head count: other clusters on the machine are not ours."""
    head = LocalCluster(CLUSTER_DIR).running()
    if head is None:
        return []
    children, pids, busy = _children(), [int(head["pid"])], []
    while pids:
        pid = pids.pop()
        pids += children.get(pid, [])
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::StageWorker.run"):
                busy.append(pid)
        except OSError:
            continue
    return busy


def files_of(settings: Settings, document_id: str) -> list[str]:
    """Every object under the document's output prefixes (extracted, chunks, enriched, embeddings)."""
    store = build_object_store(settings)
    return sorted(info.key for prefix in keys.document_prefixes(document_id) for info in store.list(prefix))


def execute(instance: dg.DagsterInstance, settings: Settings, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run what a sensor's run request asks for, in this process, as the run launcher would."""
    definitions = build_definitions(settings)
    if request.job_name == "remove_documents_job":
        return definitions.resolve_job_def(request.job_name).execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags)
    return definitions.resolve_job_def("ingest_documents").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False)
