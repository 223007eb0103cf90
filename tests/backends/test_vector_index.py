from __future__ import annotations

from pathlib import Path

import lance
import numpy as np
import pytest

from ray_rag_dagster.backends.vector_index import (
    PARTITION_ROWS,
    RETRAIN_PARTITION_ROWS,
    EmbedderMismatch,
    IndexRecord,
    LanceDBIndex,
)
from ray_rag_dagster.ids import chunk_id, content_hash

DOC_A, DOC_B = "protocol-a-aaaaaaaa", "protocol-b-bbbbbbbb"


def records(document_id: str, version: str, texts: list[str], seed: int = 0, dimension: int = 8,
            model: str = "test", headings: list[str] | None = None) -> list[IndexRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for index, text in enumerate(texts):
        vector = rng.normal(size=dimension).astype(np.float32)
        out.append(
            IndexRecord(
                id=chunk_id(document_id, content_hash(text)), document_id=document_id, processing_version=version,
                source_key=f"input/{document_id}.pdf", chunk_index=index, page_start=index + 1, page_end=index + 1,
                heading_path=headings[index] if headings else "Protocol > Eligibility", text=text, content_hash=content_hash(text),
                entities={"people": [], "organizations": [], "medications": ["metformin"]},
                key_phrases=["eligibility"], redactions={"email": 1}, embed_model=model,
                vector=vector / np.linalg.norm(vector),
            )
        )
    return out


def test_reload_replaces_rows_and_drops_old_versions(tmp_path: Path) -> None:
    index = LanceDBIndex(tmp_path / "db")
    v1 = ["Participants aged 18 to 75 years.", "HbA1c between 7.0% and 10.5%.", "Metformin 500 mg twice daily."]
    assert index.replace_document(DOC_A, records(DOC_A, "v1", v1)) == 3
    assert index.replace_document(DOC_B, records(DOC_B, "v1", ["Other document text."])) == 1
    # Same content again: same ids, same count.
    assert index.replace_document(DOC_A, records(DOC_A, "v1", v1)) == 3
    # A new version with one chunk changed and one removed: exactly its rows remain.
    v2 = ["Participants aged 18 to 80 years.", "HbA1c between 7.0% and 10.5%."]
    assert index.replace_document(DOC_A, records(DOC_A, "v2", v2)) == 2
    assert index.count() == 3
    table = index.db.open_table("chunks").to_arrow().to_pylist()
    assert sorted(row["text"] for row in table if row["document_id"] == DOC_A) == sorted(v2)
    assert {row["processing_version"] for row in table if row["document_id"] == DOC_A} == {"v2"}
    assert index.delete_document(DOC_B) == 1 and index.count() == 2


def test_hybrid_search_finds_keyword_match(tmp_path: Path) -> None:
    index = LanceDBIndex(tmp_path / "db")
    texts = [f"General background paragraph number {i} about study conduct." for i in range(20)]
    texts.append("Exclusion: estimated glomerular filtration rate below 45 mL/min/1.73m2.")
    index.replace_document(DOC_A, records(DOC_A, "v1", texts))
    # A query vector far from the keyword passage: only the full-text leg can bring it up.
    keyword_vector = records(DOC_A, "v1", texts)[-1].vector
    hits = index.search("glomerular filtration rate", -keyword_vector, k=3)
    [hit] = [hit for hit in hits if hit.text.startswith("Exclusion: estimated glomerular")]
    assert hits[0] is hit  # the full-text margin wins over a vector leg with no signal
    assert hit.metadata["entities"]["medications"] == ["metformin"]
    assert hit.heading_path == "Protocol > Eligibility" and hit.page_start == 21


def test_a_query_naming_one_documents_study_code_searches_that_document(tmp_path: Path) -> None:
    index = LanceDBIndex(tmp_path / "db")
    other = ["Revised protocol sections: the numbering of inclusion and exclusion criteria. Exclusion criterion "
             "changes, exclusion criterion wording, inclusion criterion order."] + [
        f"Exclusion criterion note {i} of the other protocol." for i in range(8)]
    named = [f"Protocol H2Q-MC-LZZT page {i}: background on the xanomeline study design." for i in range(8)] + [
        "Protocol H2Q-MC-LZZT exclusions: a history of syncope within the last 5 years."]
    index.replace_document(DOC_A, records(DOC_A, "v1", other, seed=1))
    index.replace_document(DOC_B, records(DOC_B, "v1", named, seed=2))
    query_vector = records(DOC_A, "v1", other, seed=1)[0].vector  # the vector leg points at the other document
    hits = index.search("LZZT exclusion criterion: Syncope", query_vector, k=5)
    assert {hit.document_id for hit in hits} == {DOC_B}  # LZZT occurs only in DOC_B
    assert hits[0].text.endswith("syncope within the last 5 years.")
    assert len(hits) == 5  # all from DOC_B's own candidates
    # A capitalised word found in both documents (or in none) names no document: both are searched.
    assert {hit.document_id for hit in index.search("Protocol exclusion criterion", query_vector, k=10)} == {DOC_A, DOC_B}
    assert {hit.document_id for hit in index.search("XYZ exclusion criterion", query_vector, k=10)} == {DOC_A, DOC_B}


def test_within_the_named_document_its_name_does_not_rank(tmp_path: Path) -> None:
    """"LY900018 study phase" is answered by the design paragraph, not by the title page that repeats the code
    (in the Lilly protocol the title pages came first); a code in few of its chunks (a lab: HIV) still ranks."""
    index = LanceDBIndex(tmp_path / "db")
    index.replace_document(DOC_A, records(DOC_A, "v1", [f"Background paragraph {i} of another study." for i in range(6)]))
    named = ["Protocol LY900018: nasal glucagon (LY900018) compared to glucagon. LY900018 title page.",
             "This is a Phase 3, multicenter, randomized, open-label crossover design.",
             "Protocol LY900018 page 7: visit procedures, vital signs and blood samples.",
             "Exclusion: evidence of HIV infection.",
             *[f"Visit {i} procedures: vital signs and blood samples." for i in range(4)]]
    loaded = records(DOC_B, "v1", named, seed=3)
    index.replace_document(DOC_B, loaded)
    hits = index.search("LY900018 study phase", loaded[0].vector, k=3)  # vector leg: the title page
    assert hits[0].text.startswith("This is a Phase 3")
    assert {hit.document_id for hit in hits} == {DOC_B}
    assert index.search("LY900018 HIV procedures", loaded[2].vector, k=3)[0].text.startswith("Exclusion: evidence of HIV")
    # What the embedder reads: the question without the study's name, lab codes kept.
    assert index.embedding_text("LY900018 HIV procedures") == "HIV procedures"
    assert index.embedding_text("HIV and ECG procedures") == "HIV and ECG procedures"


def test_a_label_question_finds_the_criterion_under_its_heading(tmp_path: Path) -> None:
    """"Exclusion criterion: HIV" is about a chunk under "Exclusion Criteria", not about an amendment that says
    "criterion" three times (in the Lilly protocol it was the first hit of most label questions)."""
    index = LanceDBIndex(tmp_path / "db")
    chunks = {
        "Revised Protocol Sections": "The numbering system used for inclusion and exclusion criteria provides a "
        "unique number for each criterion. In case an amendment adds a criterion, that criterion will receive "
        "the next available number. LY900018 protocol amendment.",
        "6.1. Inclusion Criteria": "[9] are reliable and willing to make themselves available for the study",
        "6.2. Exclusion Criteria": "[26] regularly use known drugs of abuse [27] show evidence of human "
        "immunodeficiency virus (HIV) infection and/or positive HIV antibodies",
        **{f"9.{number}. Safety": f"Adverse event reporting paragraph {number}, including "
           f"{'HIV' if number == 0 else 'blood'} tests at visit 2." for number in range(12)},
    }
    loaded = records(DOC_A, "v1", list(chunks.values()), headings=list(chunks))
    index.replace_document(DOC_A, loaded)
    hits = index.search("LY900018 exclusion criterion: HIV", loaded[0].vector, k=3)  # vector leg: the amendment
    assert hits[0].heading_path == "6.2. Exclusion Criteria"


def test_a_large_table_gets_a_vector_index_and_every_row_stays_indexed(tmp_path: Path) -> None:
    """Past ``vector_index_min_rows`` the vector leg gets an IVF-PQ index; every load adds its rows to both
    indices, the vector index's deltas are merged, and it is trained again once the table outgrows it."""
    index = LanceDBIndex(tmp_path / "db", text_weight=0.0, vector_index_min_rows=300)
    filler = [f"Visit schedule paragraph {number} for the screening period." for number in range(200)]
    index.replace_document(DOC_A, records(DOC_A, "v1", filler, seed=1))
    assert [config.index_type for config in index.db.open_table("chunks").list_indices()] == ["FTS"]

    texts = [f"Dosing paragraph {number}: insulin lispro titration." for number in range(199)]
    texts.append("Exclusion: estimated glomerular filtration rate below 45 mL/min/1.73m2.")
    loaded = records(DOC_B, "v1", texts, seed=2)
    index.replace_document(DOC_B, loaded)
    indices = {tuple(config.columns): config for config in index.db.open_table("chunks").list_indices()}
    assert indices[("vector",)].index_type == "IvfPq"
    assert indices[("search_text",)].num_unindexed_rows == 0
    index.replace_document(DOC_A, records(DOC_A, "v2", filler[:100], seed=3))
    indices = {tuple(config.columns): config for config in index.db.open_table("chunks").list_indices()}
    assert indices[("vector",)].num_unindexed_rows == indices[("search_text",)].num_unindexed_rows == 0

    for record in loaded[::40]:
        assert index.search("paragraph", record.vector, k=1)[0].id == record.id  # vector leg through the index
    keyword = LanceDBIndex(tmp_path / "db").search("glomerular filtration", -loaded[-1].vector, k=1)
    assert keyword[0].id == loaded[-1].id

    for number in range(3):  # each load adds a delta, merged in the same write
        document_id = f"protocol-{number:08x}"
        index.replace_document(document_id, records(document_id, "v1", [f"Note {number}."], seed=10 + number))
        assert index.db.open_table("chunks").index_stats("vector_idx").num_indices == 1
    assert index.search("note", records("protocol-00000001", "v1", ["Note 1."], seed=11)[0].vector, k=1)[0].text == "Note 1."

    def partitions() -> int:
        return lance.dataset(str(tmp_path / "db" / "chunks.lance")).stats.index_stats("vector_idx")["indices"][0][
            "num_partitions"]

    assert partitions() == 1  # trained on 400 rows
    grown = [f"Schedule row {number}." for number in range(RETRAIN_PARTITION_ROWS)]
    index.replace_document("protocol-9999abcd", records("protocol-9999abcd", "v1", grown, seed=5))
    assert partitions() == index.count() // PARTITION_ROWS == 2  # outgrown: trained again


def test_vectors_of_another_embedder_are_refused_with_a_reason(tmp_path: Path) -> None:
    """The embedder setting changed (384-d MiniLM index, 256-d static model now): loads and searches say so,
    instead of LanceDB's shape error or, worse, similarities between two unrelated vector spaces."""
    index = LanceDBIndex(tmp_path / "db")
    index.replace_document(DOC_A, records(DOC_A, "v1", ["Participants aged 18 to 75 years."], dimension=384,
                                          model="all-MiniLM-L6-v2-int8"))
    with pytest.raises(EmbedderMismatch, match=r"384-d vectors made by all-MiniLM-L6-v2-int8.*256-d.*ray-rag reset"):
        index.replace_document(DOC_B, records(DOC_B, "v1", ["Other text."], dimension=256, model="static256"))
    with pytest.raises(EmbedderMismatch, match="the query's vector is 256-d"):
        index.search("participants", np.ones(256, dtype=np.float32) / 16, 3)
    assert index.count() == 1 and index.search("participants", np.ones(384, dtype=np.float32) / np.sqrt(384), 3)
