"""Processes killed or interrupted mid-run: a stage worker (SIGKILL), a Dagster run's process (SIGKILL),
and ``ray-rag ingest`` (Ctrl-C). Every document still ends COMPLETED, without waiting longer than the
lease says."""

from __future__ import annotations

import os
import signal
import threading
import time

import dagster as dg
import pytest

from ray_rag_dagster.backends import build_object_store, build_status_store, build_vector_index
from ray_rag_dagster.backends.status_store import COMPLETED, IN_PROGRESS, PENDING
from ray_rag_dagster.defs.assets import ASSET_OF_STAGE
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.ingest import ingest_paths
from ray_rag_dagster.settings import Settings
from tests.conftest import PDFS
from tests.defs.test_sensors import tick

from .harness import busy_stage_workers, execute, start_ingest, start_run, wait_for

pytestmark = pytest.mark.slow

FOUR_PAGES = PDFS / "docling" / "normal_4pages.pdf"  # tables on every page: seconds of extraction
ONE_PAGE = PDFS / "docling" / "2305.03393v1-pg9.pdf"
LEASE = 10  # seconds (the smallest the settings allow): a dead run's claim lapses quickly


def test_a_stage_worker_killed_mid_extract_does_not_lose_the_document(state: Settings) -> None:
    status = build_status_store(state)
    document_id = document_id_for(f"input/{FOUR_PAGES.name}")
    killed: list[int] = []

    def kill_a_worker_while_extracting() -> None:
        def extracting() -> list[int]:
            row = status.get(document_id)
            return busy_stage_workers() if row and row.status == IN_PROGRESS and row.current_stage is None else []

        pid = wait_for(extracting, "a stage worker extracting the PDF")[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_a_worker_while_extracting)
    killer.start()
    [outcome] = ingest_paths(state, [FOUR_PAGES])
    killer.join()
    assert killed, "no worker was killed"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert (outcome.status, outcome.detail) == (COMPLETED, "")
    row = status.get(document_id)
    assert row.counts["pages"] == 4 and row.counts["vectors"] == row.counts["chunks"] > 0
    assert build_vector_index(state).count(document_id) == row.counts["chunks"]
    # Every stage was materialized once for the document, by the one run.
    [run] = dg.DagsterInstance.get().get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS


def test_a_killed_run_is_requested_again_once_its_lease_runs_out(
    state: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_RAG_LEASE_SECONDS", str(LEASE))
    settings = Settings()
    instance = dg.DagsterInstance.get()
    build_object_store(settings).put_bytes(f"input/{ONE_PAGE.name}", ONE_PAGE.read_bytes())
    document_id = document_id_for(f"input/{ONE_PAGE.name}")
    first = tick(instance, settings.home, None)
    [request] = first.run_requests
    run = start_run(document_id, request.tags)
    status = build_status_store(settings)
    wait_for(lambda: (row := status.get(document_id)) and row.status == IN_PROGRESS, "the run to claim the PDF")
    run.kill()
    killed_at = time.time()
    run.wait()
    held = status.get(document_id)
    assert held.status == IN_PROGRESS and held.is_leased()  # the dead run still holds it ...
    assert held.lease_expires_at - killed_at <= LEASE  # ... for at most one lease (it renewed every LEASE / 5 s)
    # Ticks while the lease runs: nothing requested (the run might be alive).
    early = tick(instance, settings.home, first.cursor)
    assert early.run_requests == []
    wait_for(lambda: time.time() > held.lease_expires_at, "the lease to run out", timeout=LEASE + 5, every=0.2)
    # The first tick after it: requested again, under a new run key (Dagster would drop a repeated one).
    late = tick(instance, settings.home, early.cursor)
    [again] = late.run_requests
    assert again.partition_key == document_id and again.run_key != request.run_key
    result = execute(instance, settings, again)
    assert result.success
    row = status.get(document_id)
    assert row.status == COMPLETED and row.owner == result.run_id
    assert build_vector_index(settings).count(document_id) == row.counts["chunks"] > 0
    materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert materialized == set(ASSET_OF_STAGE.values())


def test_ctrl_c_of_ingest_releases_the_claim_and_an_immediate_reingest_completes(state: Settings) -> None:
    status = build_status_store(state)
    document_id = document_id_for(f"input/{FOUR_PAGES.name}")
    ingest = start_ingest(FOUR_PAGES)
    wait_for(lambda: (row := status.get(document_id)) and row.status == IN_PROGRESS and busy_stage_workers(),
             "ingest to start extracting")
    ingest.send_signal(signal.SIGINT)
    output = ingest.communicate(timeout=120)[0].decode()
    assert ingest.returncode != 0, output
    row = status.get(document_id)
    assert row.status == PENDING and not row.is_leased(), row
    assert status.audit(document_id)[-1]["to_status"] == PENDING  # released by the interrupted run
    # At once, not after the lease (300 s here): the claim was given back.
    [outcome] = ingest_paths(state, [FOUR_PAGES])
    assert (outcome.status, outcome.detail) == (COMPLETED, "")
    assert build_vector_index(state).count(document_id) == status.get(document_id).counts["chunks"] > 0
