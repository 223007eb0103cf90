from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ray_rag_dagster.backends.dynamodb_status_store import DynamoDBStatusStore
from ray_rag_dagster.backends.sqlite_status_store import SqliteStatusStore
from ray_rag_dagster.backends.status_store import (
    COMPLETED,
    DELETED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    StatusStore,
)
from tests.standins.aws import moto_server

StoreFactory = Callable[[], StatusStore]


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["sqlite", "dynamodb"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of store handles on one fresh store: each call is a separate client, like another process."""
    if request.param == "sqlite":
        return lambda: SqliteStatusStore(tmp_path / "s.sqlite")
    endpoint = request.getfixturevalue("aws_endpoint")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    DynamoDBStatusStore(prefix, endpoint_url=endpoint).ensure_tables()
    return lambda: DynamoDBStatusStore(prefix, endpoint_url=endpoint)


def test_lifecycle_audit_and_metrics(new_store: StoreFactory) -> None:
    store = new_store()
    row = store.register("file-a-aaaaaaaa", "v1", "input/a.pdf")
    assert row.status == PENDING
    assert store.claim("file-a-aaaaaaaa", "v1", "run-1", 60, reprocess=False).granted
    store.record_stage("file-a-aaaaaaaa", "v1", "extract", pages=3, seconds=1.5)
    store.record_stage("file-a-aaaaaaaa", "v1", "chunk", chunks=7, seconds=2.0)
    store.complete("file-a-aaaaaaaa", "v1")
    done = store.get("file-a-aaaaaaaa")
    assert done is not None and done.status == COMPLETED and done.current_stage == "chunk"
    assert done.counts["pages"] == 3 and done.counts["chunks"] == 7
    transitions = [(e["from_status"], e["to_status"], e["stage"]) for e in store.audit("file-a-aaaaaaaa")]
    assert transitions[0] == (None, PENDING, None)
    assert (PENDING, IN_PROGRESS, None) in transitions
    assert transitions[-1] == (IN_PROGRESS, COMPLETED, "chunk")
    [metrics] = store.metrics()
    assert (metrics["documents_completed"], metrics["pages"], metrics["chunks"]) == (1, 3, 7)


def test_failure_is_recorded_with_reason(new_store: StoreFactory) -> None:
    store = new_store()
    store.register("file-b-bbbbbbbb", "v1", "input/b.pdf")
    store.claim("file-b-bbbbbbbb", "v1", "run-1", 60, reprocess=False)
    store.fail("file-b-bbbbbbbb", "v1", "extract", "b.pdf: password-protected PDF")
    row = store.get("file-b-bbbbbbbb", "v1")
    assert row is not None and (row.status, row.error, row.retry_count) == (FAILED, "b.pdf: password-protected PDF", 1)
    assert store.metrics()[0]["documents_failed"] == 1
    # A failed version can be claimed again (a retry).
    assert store.claim("file-b-bbbbbbbb", "v1", "run-2", 60, reprocess=False).granted


def test_partial_success_shows_in_the_detail_and_the_served_version_is_the_last_completed(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    document = "file-c-cccccccc"
    store.register(document, "v1", "input/c.pdf")
    store.claim(document, "v1", "run-1", 60, reprocess=False)
    store.record_stage(document, "v1", "extract", note="docling converted the document partly: page 3 failed", pages=4)
    store.record_stage(document, "v1", "load", vectors=9)
    assert store.complete(document, "v1", "run-1")
    row = store.get(document)
    assert (row.status, row.error) == (COMPLETED, "docling converted the document partly: page 3 failed")
    assert store.audit(document)[2]["message"] == "extract done: docling converted the document partly: page 3 failed"
    # v2 in progress or failed: v1 stays the one search serves; once v2 completes, v2 is.
    assert store.completed_versions() == {document: "v1"}
    store.register(document, "v2", "input/c.pdf")
    store.claim(document, "v2", "run-2", 60, reprocess=False)
    store.fail(document, "v2", "load", "c.pdf: load failed")
    assert store.completed_versions() == {document: "v1"}
    store.claim(document, "v2", "run-3", 60, reprocess=False)
    assert store.complete(document, "v2", "run-3")
    assert store.completed_versions() == {document: "v2"}


def test_completed_version_is_not_reprocessed_unless_asked(new_store: StoreFactory) -> None:
    store = new_store()
    store.register("file-c-cccccccc", "v1", "input/c.pdf")
    store.claim("file-c-cccccccc", "v1", "run-1", 60, reprocess=False)
    store.complete("file-c-cccccccc", "v1")
    assert not store.claim("file-c-cccccccc", "v1", "run-2", 60, reprocess=False).granted
    assert store.claim("file-c-cccccccc", "v1", "run-3", 60, reprocess=True).granted
    # A new version of the same document is independent of the old one.
    store.register("file-c-cccccccc", "v2", "input/c.pdf")
    assert store.claim("file-c-cccccccc", "v2", "run-4", 60, reprocess=False).granted
    assert store.get("file-c-cccccccc").processing_version == "v2"


LEASE = 5  # seconds: long enough for eight claims on a loaded machine, short enough to wait out


def test_concurrent_claimers_get_one_grant_and_expired_lease_is_reclaimable(new_store: StoreFactory) -> None:
    new_store().register("file-d-dddddddd", "v1", "input/d.pdf")

    def claim(owner: str) -> bool:
        # Each claimer has its own client, like two orchestrator processes.
        return new_store().claim("file-d-dddddddd", "v1", owner, LEASE, reprocess=False).granted

    with ThreadPoolExecutor(8) as pool:
        grants = list(pool.map(claim, [f"orchestrator-{i}" for i in range(8)]))
    assert grants.count(True) == 1
    holder = new_store().get("file-d-dddddddd")
    assert holder is not None and holder.is_leased()
    refused = new_store().claim("file-d-dddddddd", "v1", "orchestrator-x", LEASE, reprocess=True)
    assert not refused.granted and refused.holder == holder.owner  # leased: even reprocess must wait
    time.sleep(max(0.0, holder.lease_expires_at - time.time()) + 0.1)  # the holder "crashed": its lease runs out
    assert claim("orchestrator-late")


def test_deleted_documents_say_so(new_store: StoreFactory) -> None:
    store = new_store()
    store.register("file-e-eeeeeeee", "v1", "input/e.pdf")
    store.mark_deleted("file-e-eeeeeeee", "v1", "input/e.pdf was deleted from the inbox")
    assert store.get("file-e-eeeeeeee").status == DELETED
    assert [row.document_id for row in store.documents()] == ["file-e-eeeeeeee"]
    assert store.audit("file-e-eeeeeeee")[-1]["to_status"] == DELETED


def test_release_gives_an_unfinished_claim_back_at_once(new_store: StoreFactory) -> None:
    """An interrupted ingest or a broken run step releases its claims: a re-ingest need not wait for the lease."""
    store = new_store()
    store.register("file-f-ffffffff", "v1", "input/f.pdf")
    assert store.claim("file-f-ffffffff", "v1", "run-1", 3600, reprocess=False).granted
    assert not store.release("file-f-ffffffff", "v1", "run-2", "not its claim")
    assert store.get("file-f-ffffffff", "v1").is_leased()
    assert store.release("file-f-ffffffff", "v1", "run-1", "ingest interrupted")
    row = store.get("file-f-ffffffff", "v1")
    assert row is not None and row.status == PENDING and not row.is_leased()
    last = store.audit("file-f-ffffffff")[-1]
    assert (last["from_status"], last["to_status"], last["message"]) == (IN_PROGRESS, PENDING, "ingest interrupted")
    assert not store.release("file-f-ffffffff", "v1", "run-1", "twice")  # nothing held any more
    assert store.claim("file-f-ffffffff", "v1", "run-3", 3600, reprocess=False).granted  # no lease to wait for
    assert store.complete("file-f-ffffffff", "v1", "run-3")
    assert not store.release("file-f-ffffffff", "v1", "run-3", "too late")  # a finished version stays finished
    assert store.get("file-f-ffffffff", "v1").status == COMPLETED


def test_revert_and_readd_reopen_the_version_and_completion_is_conditional(new_store: StoreFactory) -> None:
    store = new_store()
    for version in ("v1", "v2"):
        store.register("file-c-cccccccc", version, "input/c.pdf")
        assert store.claim("file-c-cccccccc", version, "run-a", 60, reprocess=False).granted
        assert store.complete("file-c-cccccccc", version, "run-a")
        time.sleep(0.01)
    # v1 -> v2 -> v1: the old COMPLETED row of v1 must not make it look indexed.
    assert store.register("file-c-cccccccc", "v1", "input/c.pdf").status == PENDING
    # The current version registered again stays as it is.
    assert store.register("file-c-cccccccc", "v2", "input/c.pdf").status == COMPLETED
    # A run that lost its claim, or whose document was deleted, does not complete it.
    assert store.claim("file-c-cccccccc", "v1", "run-b", 60, reprocess=False).granted
    assert not store.complete("file-c-cccccccc", "v1", "run-other")
    assert store.renew("file-c-cccccccc", "v1", "run-b", 60)
    assert not store.renew("file-c-cccccccc", "v1", "run-other", 60)
    store.mark_deleted("file-c-cccccccc", "v1", "deleted from the inbox")
    assert not store.complete("file-c-cccccccc", "v1", "run-b")
    assert store.get("file-c-cccccccc", "v1").status == DELETED
    # Re-added after the delete: processed again.
    assert store.register("file-c-cccccccc", "v1", "input/c.pdf").status == PENDING


def test_release_gives_back_only_the_owners_claim(new_store: StoreFactory) -> None:
    store = new_store()
    store.register("file-d-dddddddd", "v1", "input/d.pdf")
    assert store.claim("file-d-dddddddd", "v1", "cli-1", 3600, reprocess=False).granted
    assert not store.release("file-d-dddddddd", "v1", "cli-2", "not mine")
    assert store.release("file-d-dddddddd", "v1", "cli-1", "interrupted")
    row = store.get("file-d-dddddddd", "v1")
    assert row.status == PENDING and row.lease_expires_at is None
    assert store.claim("file-d-dddddddd", "v1", "cli-2", 3600, reprocess=False).granted


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """The flow asks the status row before every stage while the run's own thread writes rows: a read must
    see the last committed state at once, not queue behind the write lock (WAL)."""
    import sqlite3

    store = SqliteStatusStore(tmp_path / "status.sqlite")
    store.register("doc-a", "v1", "input/a.pdf")
    writer = sqlite3.connect(tmp_path / "status.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another thread or process in the middle of a write
    writer.execute("UPDATE control SET status = 'FAILED' WHERE document_id = 'doc-a'")
    try:
        with ThreadPoolExecutor(1) as pool:
            row = pool.submit(store.get, "doc-a", "v1").result(timeout=10)  # blocked up to 30 s before
            assert row is not None and row.status == PENDING  # the committed state, not the pending write
            assert [r.document_id for r in pool.submit(store.documents).result(timeout=10)] == ["doc-a"]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
