"""End to end on the embedded default: real PDFs through all five assets on a real local Ray.

One ingest of a mixed batch (a real 73-page clinical protocol, docling's table test file, the generated samples,
and four kinds of bad input) is shared by the tests below, as a user would run it with ``ray-rag ingest``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import ray
from reportlab.pdfgen import canvas
from typer.testing import CliRunner

from ray_rag_dagster.backends import build_object_store, build_status_store, build_vector_index
from ray_rag_dagster.cli import IngestOutcome, app
from ray_rag_dagster.defs.assets import ASSET_OF_STAGE
from ray_rag_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, documents
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.ingest import ingest_paths
from ray_rag_dagster.samples import KNOWN_SENTENCE, write_samples
from ray_rag_dagster.search import search_index
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.chunk import load_document
from ray_rag_dagster.stages.manifest import DocumentRef
from ray_rag_dagster.stages.page_markdown import ChunkMarkdownSerializer

from .conftest import GROUNDTRUTH, PDFS

# One long real protocol (its sentences are searched below); more only add minutes, not coverage.
CLINICAL = [PDFS / "clinical" / "EliLilly_NCT03421379_Diabetes.pdf"]
TABLES_PDF = PDFS / "docling" / "normal_4pages.pdf"
BAD_INPUTS = {
    "empty.pdf": "empty",
    "truncated.pdf": "corrupt",
    "notes_named.pdf": "not a pdf",
    "locked.pdf": "password",
}

pytestmark = pytest.mark.slow


def ref(outcome: IngestOutcome) -> DocumentRef:
    """The document version an outcome names (its outputs are keyed by it)."""
    return DocumentRef(document_id=outcome.document_id, version=outcome.version, source_key=f"input/{outcome.path.name}")


def partitions_of(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    if "dagster/partition" in run.tags:
        return [run.tags["dagster/partition"]]
    ordered = instance.get_dynamic_partitions(documents.name)
    return ordered[ordered.index(run.tags[RANGE_START_TAG]) : ordered.index(run.tags[RANGE_END_TAG]) + 1]


def make_bad_inputs(folder: Path) -> list[Path]:
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "truncated.pdf").write_bytes(TABLES_PDF.read_bytes()[:3000])
    (folder / "notes_named.pdf").write_text("meeting notes, not a PDF at all\n")
    locked = canvas.Canvas(str(folder / "locked.pdf"), encrypt="secret")
    locked.drawString(72, 720, "Confidential protocol amendment")
    locked.save()
    return [folder / name for name in BAD_INPUTS]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict[str, IngestOutcome]]]:
    home = tmp_path_factory.mktemp("home")
    previous = {name: os.environ.get(name) for name in ("RAY_RAG_HOME", "DAGSTER_HOME")}
    os.environ["RAY_RAG_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    settings = Settings()
    inputs = tmp_path_factory.mktemp("inputs")
    paths = [*CLINICAL, TABLES_PDF, *write_samples(inputs), *make_bad_inputs(inputs)]
    outcomes = ingest_paths(settings, paths)
    yield settings, {outcome.path.name: outcome for outcome in outcomes}
    ray.shutdown()
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_good_documents_complete_and_bad_ones_fail_with_reason(ingested) -> None:
    settings, outcomes = ingested
    status = build_status_store(settings)
    for name, outcome in outcomes.items():
        row = status.get(outcome.document_id)
        assert row is not None
        if name in BAD_INPUTS:
            assert row.status == "FAILED", name
            assert row.error.startswith(f"{name}: ") and BAD_INPUTS[name] in row.error.lower(), row.error
            assert "\n" not in row.error
        else:
            assert row.status == "COMPLETED", (name, row.error)
            assert row.counts["vectors"] == row.counts["chunks"] > 0


def test_failed_run_carries_the_reason(ingested) -> None:
    """A batch run fails last, naming each bad document with its reason; its good documents are done."""
    settings, outcomes = ingested
    instance = dg.DagsterInstance.get()
    status = build_status_store(settings)
    bad_ids = {outcomes[name].document_id: name for name in BAD_INPUTS}
    runs = [run for run in instance.get_runs() if set(partitions_of(instance, run)) & set(bad_ids)]
    assert runs
    for run in runs:
        assert run.status == dg.DagsterRunStatus.FAILURE
        records = [record.event_log_entry.dagster_event for record in instance.get_records_for_run(run.run_id).records]
        events = [event for event in records if event is not None]
        [failure] = [event for event in events if event.is_step_failure]
        description = str(failure.step_failure_data.user_failure_data.description)
        partitions = partitions_of(instance, run)
        for document_id in partitions:
            row = status.get(document_id)
            assert row is not None
            if document_id in bad_ids:
                assert row.error in description, (row.error, description)
                assert BAD_INPUTS[bad_ids[document_id]] in row.error.lower()
            else:
                assert row.status == "COMPLETED", (document_id, row.error)
        assert "locked.pdf: password-protected PDF" in description
        # Every good document of the run was materialized, each asset per partition, before the step failed.
        materialized = {
            (event.asset_key.to_user_string(), event.partition)
            for event in events if event.is_step_materialization
        }
        good = [document_id for document_id in partitions if document_id not in bad_ids]
        assert materialized == {(asset, document_id) for asset in ASSET_OF_STAGE.values() for document_id in good}


def test_known_sentences_are_found_at_rank_one(ingested) -> None:
    settings, _ = ingested
    eli_lilly = "Study B002 demonstrated that 96% of moderate to severe hypoglycemic events were resolved within 30 minutes."
    for sentence, source in ((eli_lilly, "input/EliLilly_NCT03421379_Diabetes.pdf"), (KNOWN_SENTENCE, None)):
        top = search_index(settings, sentence, k=5)[0]
        assert " ".join(top.text.split()).find(" ".join(sentence.split()[:8])) >= 0, top.text[:300]
        if source:
            assert top.source_key == source and top.page_start >= 1


def test_every_table_comes_out_as_markdown_and_no_chunk_cuts_a_row(ingested) -> None:
    settings, outcomes = ingested
    store = build_object_store(settings)
    pages = store.get_json(keys.extracted_pages(ref(outcomes[TABLES_PDF.name])))["pages"]
    expected_tables = len(re.findall(r"^\|[-:| ]+\|$", (GROUNDTRUTH / "docling" / "normal_4pages.md").read_text(), re.MULTILINE))
    markdown = "\n\n".join(page["markdown"] for page in pages)
    assert len(re.findall(r"^\|[-:| ]+\|$", markdown, re.MULTILINE)) == expected_tables >= 1
    for outcome in outcomes.values():
        if outcome.status != "COMPLETED":
            continue
        doc = load_document(settings, ref(outcome))
        serializer = ChunkMarkdownSerializer(doc=doc)
        chunks = store.get_jsonl(keys.chunks(ref(outcome)))
        for table in doc.tables:
            rows = [line for line in serializer.serialize(item=table).text.splitlines() if line.startswith("|")]
            # Every row whole inside a chunk (a table repeated in the document may sit in several).
            for row in rows:
                assert any(row in chunk["text"] for chunk in chunks), row[:80]


def test_scanned_page_goes_through_ocr(ingested) -> None:
    settings, outcomes = ingested
    pages = build_object_store(settings).get_json(keys.extracted_pages(ref(outcomes["scanned_consent_form.pdf"])))["pages"]
    assert [page["ocr"] for page in pages] == [True]
    assert len(pages[0]["markdown"].split()) > 10
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey("extracted_pages"))
    assert event is not None


def test_reingest_is_idempotent(ingested) -> None:
    settings, outcomes = ingested
    index = build_vector_index(settings)
    before = index.count()
    good = [*CLINICAL, TABLES_PDF]
    again = ingest_paths(settings, good)
    assert {outcome.status for outcome in again} == {"UNCHANGED"}
    assert index.count() == before
    forced = ingest_paths(settings, [TABLES_PDF], reprocess=True)
    assert forced[0].status == "COMPLETED"
    assert index.count() == before


def test_cli_search_json(ingested) -> None:
    result = CliRunner().invoke(app, ["search", "inclusion criteria age", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 3
    assert {"document_id", "source_key", "page_start", "page_end", "heading_path", "score", "text"} <= set(hits[0])
    assert any(hit["source_key"].startswith("input/") for hit in hits)


def test_dagster_cli_materializes_one_partition(ingested) -> None:
    settings, outcomes = ingested
    document_id = document_id_for(f"input/{TABLES_PDF.name}")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "ray_rag_dagster.defs",
         "--select", "chunks", "--partition", document_id],
        capture_output=True, text=True, env={**os.environ}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RUN_SUCCESS" in result.stderr + result.stdout
