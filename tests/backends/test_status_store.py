from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ray_rag_dagster.backends.status_store import COMPLETED, FAILED, IN_PROGRESS, PENDING, SqliteStatusStore


def test_lifecycle_audit_and_metrics(tmp_path: Path) -> None:
    store = SqliteStatusStore(tmp_path / "s.sqlite")
    row = store.register("doc_aaaaaaaaaaaa", "v1", "input/a.pdf")
    assert row.status == PENDING
    assert store.claim("doc_aaaaaaaaaaaa", "v1", "run-1", 60, reprocess=False).granted
    store.record_stage("doc_aaaaaaaaaaaa", "v1", "extract", pages=3, seconds=1.5)
    store.record_stage("doc_aaaaaaaaaaaa", "v1", "chunk", chunks=7, seconds=2.0)
    store.complete("doc_aaaaaaaaaaaa", "v1")
    done = store.get("doc_aaaaaaaaaaaa")
    assert done is not None and done.status == COMPLETED and done.current_stage == "chunk"
    assert done.counts["pages"] == 3 and done.counts["chunks"] == 7
    transitions = [(e["from_status"], e["to_status"], e["stage"]) for e in store.audit("doc_aaaaaaaaaaaa")]
    assert transitions[0] == (None, PENDING, None)
    assert (PENDING, IN_PROGRESS, None) in transitions
    assert transitions[-1] == (IN_PROGRESS, COMPLETED, "chunk")
    [metrics] = store.metrics()
    assert (metrics["documents_completed"], metrics["pages"], metrics["chunks"]) == (1, 3, 7)


def test_failure_is_recorded_with_reason(tmp_path: Path) -> None:
    store = SqliteStatusStore(tmp_path / "s.sqlite")
    store.register("doc_bbbbbbbbbbbb", "v1", "input/b.pdf")
    store.claim("doc_bbbbbbbbbbbb", "v1", "run-1", 60, reprocess=False)
    store.fail("doc_bbbbbbbbbbbb", "v1", "extract", "b.pdf: password-protected PDF")
    row = store.get("doc_bbbbbbbbbbbb", "v1")
    assert row is not None and (row.status, row.error, row.retry_count) == (FAILED, "b.pdf: password-protected PDF", 1)
    assert store.metrics()[0]["documents_failed"] == 1
    # A failed version can be claimed again (a retry).
    assert store.claim("doc_bbbbbbbbbbbb", "v1", "run-2", 60, reprocess=False).granted


def test_completed_version_is_not_reprocessed_unless_asked(tmp_path: Path) -> None:
    store = SqliteStatusStore(tmp_path / "s.sqlite")
    store.register("doc_cccccccccccc", "v1", "input/c.pdf")
    store.claim("doc_cccccccccccc", "v1", "run-1", 60, reprocess=False)
    store.complete("doc_cccccccccccc", "v1")
    assert not store.claim("doc_cccccccccccc", "v1", "run-2", 60, reprocess=False).granted
    assert store.claim("doc_cccccccccccc", "v1", "run-3", 60, reprocess=True).granted
    # A new version of the same document is independent of the old one.
    store.register("doc_cccccccccccc", "v2", "input/c.pdf")
    assert store.claim("doc_cccccccccccc", "v2", "run-4", 60, reprocess=False).granted
    assert store.get("doc_cccccccccccc").processing_version == "v2"


def test_concurrent_claimers_get_one_grant_and_expired_lease_is_reclaimable(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SqliteStatusStore(path).register("doc_dddddddddddd", "v1", "input/d.pdf")

    def claim(owner: str) -> bool:
        # Each claimer has its own connection, like two orchestrator processes.
        return SqliteStatusStore(path).claim("doc_dddddddddddd", "v1", owner, 1, reprocess=False).granted

    with ThreadPoolExecutor(8) as pool:
        grants = list(pool.map(claim, [f"orchestrator-{i}" for i in range(8)]))
    assert grants.count(True) == 1
    holder = SqliteStatusStore(path).get("doc_dddddddddddd")
    assert holder is not None and holder.is_leased()
    time.sleep(1.1)  # the holder "crashed": its lease runs out
    assert claim("orchestrator-late")
