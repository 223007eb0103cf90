"""Each asset check passes on what the real stages write for a real protocol, and fails on damaged output.

One module fixture runs the five stage functions (on the shared Ray, as a run does) on the CDISC pilot
protocol into a temporary state folder; each failure case copies that folder and damages one object.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pytest

from ray_rag_dagster.backends import build_object_store, build_vector_index
from ray_rag_dagster.compute.flow import STAGES, run_stages
from ray_rag_dagster.defs import build_definitions
from ray_rag_dagster.defs.assets import ASSET_OF_STAGE
from ray_rag_dagster.defs.checks import (
    CHECK_SPECS,
    check_every_chunk_embedded,
    check_no_pii_left,
    check_retrieval_quality,
    check_tables_whole,
    evaluate_checks,
)
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.ids import document_id_for, version_of
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.chunk import load_document
from ray_rag_dagster.stages.embed import load_vectors
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.page_markdown import ChunkMarkdownSerializer
from tests.conftest import PDFS

# The fixture runs the real pipeline on a 97-page protocol (a minute or more).
pytestmark = pytest.mark.slow

PROTOCOL = "CDISC_Pilot_Study.pdf"
DEFAULT_DIMENSION = 256  # the default embedder's (the static model distilled from MiniLM)


@dataclass
class Ingested:
    home: Path
    manifests: dict[str, dict]  # asset name → the stage's manifest, as Dagster passes it to a check

    def copy_to(self, folder: Path) -> Settings:
        """A private copy of the state folder to damage."""
        shutil.copytree(self.home, folder, dirs_exist_ok=True)
        return Settings(home=folder)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    home = tmp_path_factory.mktemp("ingested")
    settings = Settings(home=home)
    store = build_object_store(settings)
    key = f"input/{PROTOCOL}"
    store.put_bytes(key, (PDFS / "clinical" / PROTOCOL).read_bytes())
    version = version_of(store.list(key)[0].etag)
    document = DocumentRef(document_id=document_id_for(key), version=version, source_key=key)
    # The five stage functions, on the session's shared Ray (page ranges extracted in parallel on the warm
    # workers), exactly as a run calls them.
    results = list(run_stages(settings, [document]))
    assert [(result.stage, result.status) for result in results] == [(stage, "ok") for stage in STAGES], results
    manifests = {
        ASSET_OF_STAGE[result.stage]: result.output.model_dump()  # type: ignore[union-attr]
        for result in results
        if result.stage != "extract"
    }
    return Ingested(home, manifests)


def test_checks_are_partitioned_like_their_assets_and_run_in_the_ingest_job(tmp_path: Path) -> None:
    # Check specs of the ingest multi-asset: evaluated in the same (batch) run as their asset.
    defs = build_definitions(Settings(home=tmp_path))
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("ingest_documents")
    [ingest] = {node.assets_def for node in defs.resolve_asset_graph().asset_nodes}
    assert set(ingest.check_keys) == {spec.key for spec in CHECK_SPECS}
    assert set(job.asset_layer.asset_graph.asset_check_keys) == set(ingest.check_keys)
    graph = defs.resolve_asset_graph()
    targets = {check.name: check.asset_key.to_user_string() for check in graph.asset_check_keys}
    assert targets == {
        "tables_not_split": "chunks",
        "no_pii_left": "enriched_chunks",
        "every_chunk_embedded": "embeddings",
        "retrieval_quality": "vector_index_entries",
    }
    for spec in CHECK_SPECS:
        assert spec.partitions_def == documents
        assert not spec.blocking


def evaluations(settings: Settings, manifests: dict[str, dict]) -> dict[str, dg.AssetCheckEvaluation]:
    """What the ingest step reports for one document: every selected check of each asset, as it finishes."""
    context = SimpleNamespace(selected_asset_check_keys={spec.key for spec in CHECK_SPECS})
    found = {}
    for asset, manifest in manifests.items():
        output = StageOutput.model_validate(manifest)
        for evaluation in evaluate_checks(context, settings, asset, output):  # type: ignore[arg-type]
            assert evaluation.partition == output.document.document_id
            assert evaluation.asset_key == dg.AssetKey(asset)
            found[evaluation.check_name] = evaluation
    return found


def test_all_checks_pass_on_real_stage_output(ingested: Ingested) -> None:
    results = evaluations(Settings(home=ingested.home), ingested.manifests)
    assert set(results) == {"tables_not_split", "no_pii_left", "every_chunk_embedded", "retrieval_quality"}
    for name, result in results.items():
        assert result.passed, (name, result.description)
    assert results["tables_not_split"].metadata["tables"].value > 0
    assert results["every_chunk_embedded"].metadata["dimension"].value == DEFAULT_DIMENSION
    retrieval = results["retrieval_quality"].metadata
    assert retrieval["evaluated"].value is True
    assert retrieval["questions"].value > 50
    assert retrieval["recall_at_5"].value >= retrieval["baseline_recall_at_5"].value
    assert retrieval["mrr_at_10"].value >= retrieval["baseline_mrr_at_10"].value


def test_only_selected_checks_are_evaluated(ingested: Ingested) -> None:
    """A run of a subset (one stage, or checks deselected in the UI) evaluates only the selected checks."""
    only = dg.AssetCheckKey(dg.AssetKey("chunks"), "tables_not_split")
    context = SimpleNamespace(selected_asset_check_keys={only})
    settings = Settings(home=ingested.home)
    found = [
        evaluation.check_name
        for asset, manifest in ingested.manifests.items()
        for evaluation in evaluate_checks(context, settings, asset, StageOutput.model_validate(manifest))  # type: ignore[arg-type]
    ]
    assert found == ["tables_not_split"]


def test_a_missing_vector_or_a_wrong_dimension_fails(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.copy_to(tmp_path)
    manifest = ingested.manifests["embeddings"]
    assert not check_every_chunk_embedded(settings, manifest, expected_dimension=768).passed

    store = build_object_store(settings)
    vectors_key = keys.vectors(StageOutput.model_validate(manifest).document)
    vectors = load_vectors(store.get_bytes(vectors_key))
    buffer = io.BytesIO()
    np.save(buffer, vectors[:-1], allow_pickle=False)
    store.put_bytes(vectors_key, buffer.getvalue())
    outcome = check_every_chunk_embedded(settings, manifest, expected_dimension=DEFAULT_DIMENSION)
    assert not outcome.passed
    assert outcome.metadata["vectors"] == outcome.metadata["enriched_chunks"] - 1
    assert outcome.severity == dg.AssetCheckSeverity.ERROR


def test_pii_left_in_enriched_text_fails_without_leaking_it(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.copy_to(tmp_path)
    manifest = ingested.manifests["enriched_chunks"]
    store = build_object_store(settings)
    rows = store.get_jsonl(manifest["key"])
    rows[3]["text"] += "\nStudy contact: jane.roe@example.org, phone (555) 201-4477."
    store.put_jsonl(manifest["key"], rows)
    outcome = check_no_pii_left(settings, manifest)
    assert not outcome.passed
    assert outcome.metadata["chunks_with_pii"] == 1
    assert outcome.metadata["chunk_indices"] == str(rows[3]["chunk_index"])
    assert {"pii_left_email", "pii_left_phone"} <= outcome.metadata.keys()
    shown = f"{outcome.description} {outcome.metadata}"
    assert "jane.roe" not in shown and "4477" not in shown


def test_a_table_cut_between_two_chunks_fails(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.copy_to(tmp_path)
    manifest = ingested.manifests["chunks"]
    outcome = check_tables_whole(settings, manifest)
    assert outcome.passed, outcome.description
    assert outcome.metadata["tables"] >= 1 and outcome.metadata["split_tables"] == 0
    store = build_object_store(settings)
    doc = load_document(settings, StageOutput.model_validate(manifest).document)
    serializer = ChunkMarkdownSerializer(doc=doc)
    rows = store.get_jsonl(manifest["key"])
    table, text, at = next(
        (table, text, index)
        for table in doc.tables
        for index, row in enumerate(rows)
        if (text := serializer.serialize(item=table).text) and text in row["text"] and not row["table_part"]
    )
    cut = text.rindex("\n")  # the last row goes to a chunk of its own
    rows[at]["text"] = rows[at]["text"].replace(text, text[:cut])
    rows.insert(at + 1, {**rows[at], "text": text[cut + 1 :]})
    store.put_jsonl(manifest["key"], rows)
    outcome = check_tables_whole(settings, manifest)
    assert not outcome.passed
    assert outcome.metadata["split_tables"] == 1
    assert outcome.metadata["split_table_pages"] == str(table.prov[0].page_no)


def test_retrieval_below_the_baseline_warns(ingested: Ingested, tmp_path: Path) -> None:
    settings = ingested.copy_to(tmp_path)
    manifest = ingested.manifests["vector_index_entries"]
    document_id = manifest["document"]["document_id"]
    index = build_vector_index(settings)
    # Keep only the document's first eight rows (title page, contents): the criteria are gone from the index.
    table = index.db.open_table(settings.lancedb_table)
    table.delete(f"document_id = '{document_id}' AND chunk_index >= 8")
    assert index.count(document_id) == 8
    outcome = check_retrieval_quality(settings, manifest)
    assert not outcome.passed
    assert outcome.severity == dg.AssetCheckSeverity.WARN
    assert outcome.metadata["recall_at_5"] < outcome.metadata["baseline_recall_at_5"]
    assert "BM25 baseline" in outcome.description


def test_documents_without_an_answer_key_are_not_evaluated(ingested: Ingested) -> None:
    manifest = ingested.manifests["vector_index_entries"]
    other = {**manifest, "document": {**manifest["document"], "source_key": "input/other.pdf"}}
    outcome = check_retrieval_quality(Settings(home=ingested.home), other)
    assert outcome.passed
    assert outcome.metadata == {"evaluated": False}
