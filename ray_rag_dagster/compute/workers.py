"""Warm stage workers: a pool of detached Ray actors that run stage functions and keep their models.

A stage function runs inside a :class:`StageWorker` actor. The actor is a long-lived process, so whatever
a stage caches per process (the docling converter, the ONNX session and tokenizer) is loaded once and kept
across documents *and* across Dagster runs: the actors are detached and named, and every driver on the
cluster (each run, the CLI) finds the same ones.

- Resources: each worker reserves 1 CPU and ``ray_worker_memory_mb`` of Ray's memory, so the pool never
  oversubscribes the machine; the pool has one worker per CPU of the cluster unless ``ray_workers`` says.
- Recycling: docling's memory grows with every conversion, so a worker asks to be recycled after
  ``extract_max_calls`` extractions; the driver restarts it (``ray.kill(no_restart=False)``). Calls other
  drivers had queued on it fail as transient and their flows retry them.
- Code changes: actor names carry a fingerprint of the package's source, so edited code gets a fresh pool
  and workers running stale code are stopped.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import ray

from ray_rag_dagster.compute.cluster import NAMESPACE, WORKER_ENV
from ray_rag_dagster.errors import DocumentError, DocumentGone
from ray_rag_dagster.settings import Settings

WORKER_PREFIX = "stage-worker-"
READY_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Placement:
    """Where a stage ran (shown in the materialization's metadata)."""

    node_id: str
    host: str
    pid: int


@dataclass(frozen=True)
class CallResult:
    outcome: str  # "ok" | "bad_input" | "gone"
    value: Any  # the stage's return value, or (document, reason)
    placement: Placement
    retire: bool  # the worker wants to be recycled


@ray.remote
class StageWorker:
    """Runs stage functions; its process keeps the stages' per-process caches (models)."""

    def __init__(self) -> None:
        os.environ.update(WORKER_ENV)
        self.extractions = 0

    def run(self, fn: Callable[..., Any], args: tuple, recycle_after: int = 0) -> CallResult:
        placement = Placement(ray.get_runtime_context().get_node_id(), socket.gethostname(), os.getpid())
        counts = recycle_after > 0  # asked for by extraction calls only
        try:
            outcome, value = "ok", fn(*args)
        except DocumentGone as error:
            outcome, value = "gone", (error.document, error.reason)
        except DocumentError as error:
            outcome, value = "bad_input", (error.document, error.reason)
        finally:
            self.extractions += counts
        return CallResult(outcome, value, placement, counts and self.extractions >= recycle_after)

    def pid(self) -> int:
        return os.getpid()


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the package's Python source: a changed checkout never runs on workers holding old code."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


class WorkerPool:
    """The cluster's warm workers, as seen from one driver."""

    def __init__(self, settings: Settings) -> None:
        size = settings.ray_workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
        prefix = f"{WORKER_PREFIX}{code_fingerprint()}-"
        self._stop_stale_workers(prefix)
        options = dict(
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=1,
            memory=settings.ray_worker_memory_mb * 1024 * 1024,
            max_restarts=-1,  # a crashed or recycled worker comes back
            max_task_retries=0,  # the flow retries (with backoff) what was running on it; a hung call is not re-run
            runtime_env={"env_vars": WORKER_ENV},
        )
        actors = [StageWorker.options(name=f"{prefix}{index}", **options).remote() for index in range(size)]
        # Use the workers that run: one that cannot be placed (no free CPU) must not swallow work.
        probes = {actor.pid.remote(): actor for actor in actors}
        ready, _ = ray.wait(list(probes), num_returns=1, timeout=READY_TIMEOUT_SECONDS)
        if ready:
            more, _ = ray.wait(list(probes), num_returns=len(probes), timeout=10)
            ready = more or ready
        self.actors = [probes[ref] for ref in ready]
        if not self.actors:
            raise RuntimeError(f"no stage worker started within {READY_TIMEOUT_SECONDS} s (cluster {ray.cluster_resources()})")

    @staticmethod
    def _stop_stale_workers(current_prefix: str) -> None:
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name, namespace = entry["name"], entry["namespace"]
            if namespace == NAMESPACE and name.startswith(WORKER_PREFIX) and not name.startswith(current_prefix):
                try:
                    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
                except ValueError:  # already gone
                    pass

    def recycle(self, actor: Any) -> None:
        ray.kill(actor, no_restart=False)


def stop_workers() -> int:
    """Stop every stage worker on the cluster (``ray-rag reset``); return how many."""
    stopped = 0
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == NAMESPACE and entry["name"].startswith(WORKER_PREFIX):
            try:
                ray.kill(ray.get_actor(entry["name"], namespace=NAMESPACE), no_restart=True)
                stopped += 1
            except ValueError:
                pass
    return stopped
