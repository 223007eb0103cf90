"""The inbox changes under a running run: the PDF deleted (during and after its extraction), replaced by a
new version, reverted to an old one; and two documents loaded into an empty index at the same moment.

The run is ``ray-rag ingest`` in a child process, paused (SIGSTOP) at the chosen point while the sensor
sees the change and its requested run executes, then resumed: the order of events is the test's, not the
machine's."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from reportlab.pdfgen import canvas

from ray_rag_dagster.backends import build_object_store, build_status_store, build_vector_index
from ray_rag_dagster.backends.status_store import COMPLETED, DELETED, FAILED, IN_PROGRESS
from ray_rag_dagster.backends.vector_index import LanceDBIndex
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.ids import document_id_for, version_of
from ray_rag_dagster.ingest import ingest_paths
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef
from tests.conftest import PDFS
from tests.defs.test_sensors import tick

from .harness import busy_stage_workers, execute, files_of, start_ingest, wait_for
from .index_loader import DOC_A, DOC_B, DRUGS, load_at_the_barrier, records

pytestmark = pytest.mark.slow

FOUR_PAGES = PDFS / "docling" / "normal_4pages.pdf"


def holds_write_locks(pid: int) -> bool:
    """Whether the process holds an exclusive file lock (an SQLite write transaction on the event log or the
    status store, the index's write lock): stopped while holding one, it would block every other writer.
    Shared locks do not count: an open SQLite connection in WAL mode holds some for as long as it is open."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields and len(fields) > 4 and fields[3] == "WRITE" and fields[4] == str(pid):
            return True
    return False


@contextmanager
def paused(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block, at a moment it holds no file lock: its Ray tasks in
    flight finish, it submits and writes nothing."""
    for _ in range(2000):
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.005)  # the signal is delivered asynchronously
        if not holds_write_locks(process.pid):
            break
        process.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    else:
        pytest.fail("the ingest process never let go of its write locks")
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def finished(process: subprocess.Popen[bytes]) -> str:
    output = process.communicate(timeout=600)[0].decode(errors="replace")
    assert process.returncode == 0, output[-3000:]
    return output


def index_rows(settings: Settings, document_id: str) -> list[dict]:
    index = build_vector_index(settings)
    assert isinstance(index, LanceDBIndex)
    table = index.db.open_table(settings.lancedb_table).to_arrow().to_pylist()
    return [row for row in table if row["document_id"] == document_id]


def trial_pdf(folder: Path, sentence: str) -> Path:
    """A one-page ``trial.pdf`` saying ``sentence`` (two versions of one file differ by it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trial.pdf"
    page = canvas.Canvas(str(path), invariant=1)
    page.drawString(72, 720, "Protocol XYZ-9 dosing.")
    page.drawString(72, 700, sentence)
    page.save()
    return path


def extracted(state: Settings, document_id: str, document_version: str) -> bool:
    """Whether the version's extraction is written: polled every 20 ms, it leaves the chunk, enrich and embed
    stages (seconds) before the load to pause in. (The status row's current stage is no use for this: the
    run records a stage only when its thread gets to it, and a small PDF may be past extract by then.)"""
    ref = DocumentRef(document_id=document_id, version=document_version, source_key="input/unused.pdf")
    return build_object_store(state).exists(keys.extracted_pages(ref))


def version(path: Path) -> str:
    return version_of(hashlib.md5(path.read_bytes()).hexdigest())


@pytest.mark.parametrize("moment", ["during extraction", "after extraction"])
def test_a_pdf_deleted_mid_run_leaves_nothing(state: Settings, moment: str) -> None:
    status = build_status_store(state)
    instance = dg.DagsterInstance.get()
    document_id = document_id_for(f"input/{FOUR_PAGES.name}")

    def reached() -> bool:
        row = status.get(document_id)
        if row is None or row.status != IN_PROGRESS:
            return False
        if moment == "during extraction":
            # Claimed, not extracted yet, and a stage worker busy: the PDF is being planned or converted (a
            # warm worker converts 4 pages in about a second, so waiting for longer busy spells missed it).
            return row.current_stage is None and bool(busy_stage_workers())
        return extracted(state, document_id, version(FOUR_PAGES))

    ingest = start_ingest(FOUR_PAGES)
    wait_for(reached, f"the ingest {moment}")
    with paused(ingest):
        assert status.get(document_id).status == IN_PROGRESS  # paused before its load
        seen = tick(instance, state.home, None)
        assert seen.run_requests == []  # claimed by the ingest: nothing to request
        (state.inbox_dir / FOUR_PAGES.name).unlink()
        deleted = tick(instance, state.home, seen.cursor)
        [removal] = deleted.run_requests
        assert execute(instance, state, removal).success  # while the ingest's run is still under way
    finished(ingest)
    assert status.get(document_id).status == DELETED
    assert build_vector_index(state).count(document_id) == 0
    assert files_of(state, document_id) == []  # outputs written after the removal run went too
    assert document_id not in instance.get_dynamic_partitions(documents.name)
    # Stopped mid-run: never loaded.
    assert instance.get_latest_materialization_event(dg.AssetKey("vector_index_entries")) is None


def test_a_pdf_replaced_mid_run_leaves_only_the_new_version_indexed(state: Settings, tmp_path: Path) -> None:
    old = trial_pdf(tmp_path / "v1", "Version one: examplumab 75 mg weekly.")
    new = trial_pdf(tmp_path / "v2", "Version two: examplumab 150 mg weekly.")
    status = build_status_store(state)
    instance = dg.DagsterInstance.get()
    document_id = document_id_for("input/trial.pdf")
    ingest = start_ingest(old)
    wait_for(lambda: extracted(state, document_id, version(old)), "the old version's extraction to finish")
    with paused(ingest):
        assert status.get(document_id, version(old)).status == IN_PROGRESS  # paused before its load
        (state.inbox_dir / "trial.pdf").write_bytes(new.read_bytes())
        [request] = tick(instance, state.home, None).run_requests
        assert execute(instance, state, request).success
        assert status.get(document_id, version(new)).status == COMPLETED
    finished(ingest)  # the old version's run resumes and must not load over the new one
    rows = index_rows(state, document_id)
    assert rows and {row["processing_version"] for row in rows} == {version(new)}
    text = " ".join(row["text"] for row in rows)
    assert "Version two" in text and "Version one" not in text
    assert status.get(document_id, version(new)).status == COMPLETED
    stopped = status.get(document_id, version(old))
    assert stopped.status not in (COMPLETED, FAILED), stopped  # stopped as gone, not failed
    assert files_of(state, document_id) and all(f"/{version(new)}/" in key for key in files_of(state, document_id))


def test_v1_then_v2_then_v1_again_indexes_v1(state: Settings, tmp_path: Path) -> None:
    v1 = trial_pdf(tmp_path / "v1", "Version one: examplumab 75 mg weekly.")
    v2 = trial_pdf(tmp_path / "v2", "Version two: examplumab 150 mg weekly.")
    document_id = document_id_for("input/trial.pdf")
    for path, sentence in ((v1, "Version one"), (v2, "Version two"), (v1, "Version one")):
        [outcome] = ingest_paths(state, [path])
        assert (outcome.status, outcome.detail) == (COMPLETED, ""), outcome.detail
        rows = index_rows(state, document_id)
        assert rows and {row["processing_version"] for row in rows} == {version(path)}
        text = " ".join(row["text"] for row in rows)
        assert sentence in text and ({"Version one", "Version two"} - {sentence}).pop() not in text
    assert build_status_store(state).get(document_id).processing_version == version(v1)
    assert all(f"/{version(v1)}/" in key for key in files_of(state, document_id))


def test_concurrent_loads_into_an_empty_index_keep_every_row(tmp_path: Path) -> None:
    """Two processes load two documents into an EMPTY index at the same moment: both keep all their rows,
    and neither meets a commit conflict (the table is created under the write lock; writes queue on it)."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    path = tmp_path / "db"
    sizes = {DOC_A: 40, DOC_B: 25}
    for phase in ("empty index", "existing table"):
        barrier, results = spawn.Barrier(2), spawn.Queue()
        loaders = [
            spawn.Process(target=load_at_the_barrier, args=(str(path), document_id, count, barrier, results))
            for document_id, count in sizes.items()
        ]
        for loader in loaders:
            loader.start()
        outcomes = {}
        for _ in loaders:
            document_id, outcome, value = results.get(timeout=300)
            outcomes[document_id] = (outcome, value)
        for loader in loaders:
            loader.join(timeout=60)
            assert loader.exitcode == 0
        assert outcomes == {document_id: ("ok", count) for document_id, count in sizes.items()}, phase
        index = LanceDBIndex(path)
        assert index.count() == sum(sizes.values()), phase
        for document_id, count in sizes.items():
            assert index.count(document_id) == count, (phase, document_id)
        # The second phase reloads both documents with one more chunk each, into the now existing table.
        sizes = {document_id: count + 1 for document_id, count in sizes.items()}
    # Both documents' rows are in the full-text index.
    index = LanceDBIndex(path)
    for document_id, drug in DRUGS.items():
        hits = index.search(drug, records(document_id, "v1", ["x"])[0].vector, k=3)
        assert {hit.document_id for hit in hits} == {document_id}, drug
