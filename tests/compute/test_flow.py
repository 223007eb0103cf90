"""run_stages on the session's shared local Ray: real PDFs streamed through every stage on the warm workers.

One flow over a mixed batch is shared by the tests: two good PDFs (one extracted as page-range shards), a
corrupt one, one deleted from the inbox before its extraction, and one the caller withdraws mid-way
(``before_stage``, as the Dagster side does for a delete).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ray_rag_dagster.backends import build_object_store, build_vector_index
from ray_rag_dagster.compute.flow import STAGES, StageResult, run_stages
from ray_rag_dagster.ids import document_id_for, version_of
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef
from tests.conftest import PDFS

pytestmark = pytest.mark.slow

GOOD = ["2305.03393v1-pg9.pdf", "multi_page.pdf"]  # 1 page; 5 pages (3 shards of at most 2 pages)
CORRUPT = "truncated.pdf"
DELETED = "skipped_1page.pdf"
WITHDRAWN = "table_mislabeled_as_picture.pdf"  # stopped by before_stage when it reaches enrich


@dataclass
class Flow:
    settings: Settings
    documents: dict[str, DocumentRef]  # by file name
    results: list[StageResult]

    def of(self, name: str) -> list[StageResult]:
        return [result for result in self.results if result.document.document_id == self.documents[name].document_id]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    settings = Settings(home=tmp_path_factory.mktemp("flow"), extract_pages_per_shard=2)
    store = build_object_store(settings)
    files = {name: (PDFS / "docling" / name).read_bytes() for name in [*GOOD, DELETED, WITHDRAWN]}
    files[CORRUPT] = (PDFS / "docling" / "normal_4pages.pdf").read_bytes()[:3000]
    documents = {}
    for name, data in files.items():
        key = f"input/{name}"
        store.put_bytes(key, data)
        documents[name] = DocumentRef(
            document_id=document_id_for(key), version=version_of(store.list(key)[0].etag), source_key=key
        )
    store.delete_prefix(f"input/{DELETED}")  # gone from the inbox before the run extracts it
    asked: list[tuple[str, str]] = []

    def before_stage(document: DocumentRef, stage: str) -> str | None:
        asked.append((document.name, stage))
        if document.name == WITHDRAWN and stage == "enrich":
            return f"{WITHDRAWN} was deleted"
        return None

    results = list(run_stages(settings, list(documents.values()), before_stage=before_stage))
    assert (WITHDRAWN, "enrich") in asked
    return Flow(settings, documents, results)


def test_every_good_document_goes_through_every_stage_in_order(flow: Flow) -> None:
    for name in GOOD:
        results = flow.of(name)
        assert [(result.stage, result.status) for result in results] == [(stage, "ok") for stage in STAGES], [
            (result.stage, result.status, result.error) for result in results
        ]
        for result in results:
            assert result.output is not None and result.output.stage == result.stage
            assert result.output.document == flow.documents[name]
            assert result.placement is not None and result.placement.pid > 0
        assert results[0].output.key == keys.extracted_pages(flow.documents[name])  # type: ignore[union-attr]
        loaded = results[-1].output
        assert loaded is not None and loaded.counts["vectors"] > 0
        assert build_vector_index(flow.settings).count(flow.documents[name].document_id) == loaded.counts["vectors"]
    sharded = flow.of("multi_page.pdf")[0].output
    assert sharded is not None and sharded.counts["shards"] == 3 and sharded.counts["pages"] == 5


def test_a_corrupt_pdf_fails_alone_as_bad_input(flow: Flow) -> None:
    [result] = flow.of(CORRUPT)
    assert (result.stage, result.status, result.transient) == ("extract", "bad_input", False)
    assert result.error is not None and result.error.startswith(f"{CORRUPT}: ") and "corrupt" in result.error.lower()
    assert "\n" not in result.error


def test_a_pdf_deleted_before_its_extract_is_gone(flow: Flow) -> None:
    [result] = flow.of(DELETED)
    assert (result.stage, result.status) == ("extract", "gone")
    assert "deleted from the inbox" in (result.error or "")
    assert build_object_store(flow.settings).list(f"extracted/{flow.documents[DELETED].document_id}/") == []


def test_a_document_withdrawn_mid_way_stops_before_the_next_stage(flow: Flow) -> None:
    results = flow.of(WITHDRAWN)
    assert [(result.stage, result.status) for result in results] == [("extract", "ok"), ("chunk", "ok"), ("enrich", "gone")]
    assert results[-1].error == f"{WITHDRAWN} was deleted"
    assert build_vector_index(flow.settings).count(flow.documents[WITHDRAWN].document_id) == 0


def test_nothing_else_is_reported(flow: Flow) -> None:
    assert len(flow.results) == 2 * len(STAGES) + 1 + 1 + 3


def test_a_document_over_its_time_limit_fails_once_with_the_reason(tmp_path: Path) -> None:
    # A 97-page protocol in 4-page shards cannot be extracted in 8 s on this machine's workers: the shards
    # running at the deadline have their workers restarted, the document fails once, its other shards are dropped.
    settings = Settings(home=tmp_path, extract_pages_per_shard=4, document_timeout_seconds=8)
    store = build_object_store(settings)
    key = "input/CDISC_Pilot_Study.pdf"
    store.put_bytes(key, (PDFS / "clinical" / "CDISC_Pilot_Study.pdf").read_bytes())
    document = DocumentRef(document_id=document_id_for(key), version=version_of(store.list(key)[0].etag), source_key=key)

    results = list(run_stages(settings, [document]))

    assert [(result.stage, result.status, result.transient) for result in results] == [("extract", "failed", False)]
    assert results[0].error == "CDISC_Pilot_Study.pdf: extract over the 8 s per-document time limit"
    assert build_vector_index(settings).count(document.document_id) == 0


def test_two_runs_sharing_the_workers_survive_each_others_recycling(tmp_path: Path) -> None:
    # Every extraction recycles its worker (extract_max_calls=1) while the other run has calls on it: those
    # calls meet "the actor is restarting"; they must wait for the new process, not fail their documents.
    import threading

    settings = Settings(home=tmp_path, extract_max_calls=1, stage_attempts=2)
    store = build_object_store(settings)
    batches: list[list[DocumentRef]] = [[], []]
    for number, name in enumerate(["2305.03393v1-pg9.pdf", "table_mislabeled_as_picture.pdf", "right_to_left_01.pdf",
                                   "multi_page.pdf"]):
        key = f"input/{name}"
        store.put_bytes(key, (PDFS / "docling" / name).read_bytes())
        batches[number % 2].append(
            DocumentRef(document_id=document_id_for(key), version=version_of(store.list(key)[0].etag), source_key=key))
    results: list[list[StageResult]] = [[], []]
    runs = [threading.Thread(target=lambda i=i: results[i].extend(run_stages(settings, batches[i], ("extract",))))
            for i in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=900)
    outcomes = sorted((result.document.name, result.status, result.error) for run in results for result in run)
    assert outcomes == sorted((document.name, "ok", None) for batch in batches for document in batch)
