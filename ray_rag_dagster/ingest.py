"""Ingest files now: what ``ray-rag ingest`` (and ``make demo``) do, on the same path as the sensor's runs.

Each file's version is claimed in the status store *before* it lands in the inbox, so a running sensor
sees it as taken and never requests a second run for it. The claimed documents are then materialized in
batch runs of at most ``partitions_per_run`` partitions (ranges of the ``documents`` partitions, exactly
as the sensor requests them), each streaming its documents through the stages on the shared Ray cluster.
Ctrl-C or SIGTERM releases the claims of documents that did not finish, so an immediate re-ingest works.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ray_rag_dagster.settings import Settings


@dataclass
class IngestOutcome:
    path: Path
    document_id: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    version: str = ""


# (documents done, documents in total, one-line description of where the others are)
ProgressCallback = Callable[[int, int, str], None]


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cli_owner() -> str:
    """``cli-<host>-<pid>-<random>``: another ingest can tell whether the owner of a claim still runs."""
    return f"cli-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def owner_is_gone(owner: str | None, instance: object) -> bool:
    """True when the claim's owner is an ingest process on this machine that no longer runs, or a Dagster
    run that is over (its lease may still run for minutes)."""
    import dagster as dg

    from ray_rag_dagster.compute.cluster import _pid_alive

    if not owner:
        return False
    if owner.startswith("cli-"):
        parts = owner[len("cli-"):].rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return False  # an older owner format: wait for its lease
        host, pid = parts[0], int(parts[1])
        return host == socket.gethostname() and not _pid_alive(pid)
    run = instance.get_run_by_id(owner)  # type: ignore[attr-defined]
    return run is not None and run.status in (
        dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED
    )


def ingest_paths(
    settings: Settings,
    paths: list[Path],
    *,
    reprocess: bool = False,
    progress: ProgressCallback | None = None,
) -> list[IngestOutcome]:
    """Copy PDFs into the inbox and materialize all five stages for them now, in batch runs."""
    import dagster as dg

    from ray_rag_dagster.backends import build_object_store, build_status_store
    from ray_rag_dagster.backends.status_store import COMPLETED, FAILED
    from ray_rag_dagster.dagster_home import prepare_dagster_home
    from ray_rag_dagster.defs import build_definitions
    from ray_rag_dagster.defs.assets import INTERRUPTED, OWNER_TAG, TRIGGER_TAG
    from ray_rag_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, documents, partition_ranges
    from ray_rag_dagster.ids import check_current_ids, document_id_for, version_of

    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    store = build_object_store(settings)
    status = build_status_store(settings)
    check_current_ids([*instance.get_dynamic_partitions(documents.name), *(row.document_id for row in status.documents())])
    owner = cli_owner()
    outcomes: list[IngestOutcome] = []
    claimed: list[IngestOutcome] = []
    for path in paths:
        key = f"input/{path.name}"
        document_id = document_id_for(key)
        if not path.is_file():
            outcomes.append(IngestOutcome(path, document_id, "FAILED", f"{path}: no such file"))
            continue
        data = path.read_bytes()
        version = version_of(hashlib.md5(data).hexdigest())
        row = status.register(document_id, version, key)
        if row.status == COMPLETED and not reprocess:
            outcomes.append(IngestOutcome(path, document_id, "UNCHANGED", "this version is already indexed"))
            continue
        claim = status.claim(document_id, version, owner, settings.lease_seconds, reprocess=reprocess)
        if not claim.granted and owner_is_gone(claim.holder, instance):
            # The process or run that held it is gone (killed, crashed): take over now, not after the lease.
            status.release(document_id, version, claim.holder or "", f"owner {claim.holder} is gone")
            claim = status.claim(document_id, version, owner, settings.lease_seconds, reprocess=reprocess)
        if not claim.granted:
            outcomes.append(IngestOutcome(path, document_id, "SKIPPED", claim.reason))
            continue
        store.put_bytes(key, data)
        outcome = IngestOutcome(path, document_id, "PENDING", version=version)
        outcomes.append(outcome)
        claimed.append(outcome)
    if not claimed:
        return outcomes

    ids = [outcome.document_id for outcome in claimed]
    instance.add_dynamic_partitions(documents.name, [key for key in dict.fromkeys(ids)
                                                     if not instance.has_dynamic_partition(documents.name, key)])
    job = build_definitions(settings).resolve_job_def("ingest_documents")
    ordered = list(instance.get_dynamic_partitions(documents.name))
    batches = partition_ranges(ordered, set(ids), settings.partitions_per_run)
    started = time.perf_counter()
    stop = threading.Event()

    def follow() -> None:
        # The runs execute in this thread; report what the status store says the documents reached, and
        # keep the claims of documents still waiting for their batch alive (heartbeat).
        beats = 0
        while not stop.wait(0.5):
            beats += 1
            if beats % max(int(settings.lease_seconds / 5 / 0.5), 1) == 0:
                for outcome in claimed:
                    status.renew(outcome.document_id, outcome.version, owner, settings.lease_seconds)
            rows = [status.get(outcome.document_id, outcome.version) for outcome in claimed]
            done = sum(1 for row in rows if row and row.status in (COMPLETED, FAILED))
            stages: dict[str, int] = {}
            for row in rows:
                if row and row.status not in (COMPLETED, FAILED):
                    stage = f"{row.current_stage} done" if row.current_stage else "waiting"
                    stages[stage] = stages.get(stage, 0) + 1
            if progress:
                progress(done, len(claimed), ", ".join(f"{count} {stage}" for stage, count in sorted(stages.items())))

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        for batch in batches:
            tags = {OWNER_TAG: owner, TRIGGER_TAG: "cli"}
            if len(batch) > 1:
                tags |= {RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]}
            result = job.execute_in_process(
                instance=instance,
                partition_key=batch[0] if len(batch) == 1 else None,
                tags=tags,
                # The summary table reports failures; Dagster's event log keeps the details.
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                raise_on_error=False,
            )
            # Dagster catches Ctrl-C inside the run (the step fails, marked interrupted): stop here too.
            if any(INTERRUPTED in event.step_failure_data.user_failure_data.metadata
                   for event in result.get_step_failure_events()
                   if event.step_failure_data and event.step_failure_data.user_failure_data):
                raise KeyboardInterrupt("run interrupted")
    except KeyboardInterrupt:
        for outcome in claimed:
            status.release(outcome.document_id, outcome.version, owner, "ingest interrupted")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        watcher.join()
    elapsed = time.perf_counter() - started
    for outcome in claimed:
        row = status.get(outcome.document_id, outcome.version)
        outcome.status = row.status if row else "FAILED"
        outcome.detail = (row.error or "") if row else "no status row"
        outcome.seconds = float(row.counts.get("seconds", 0.0)) if row else elapsed
    if progress:
        progress(len(claimed), len(claimed), "done")
    return outcomes
