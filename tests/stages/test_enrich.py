"""The enrich stage redacts every string field it passes on (not only the text), and the no_pii_left check
audits every field with the independent detector. Fast: chunks are written by hand, no extraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_rag_dagster.backends import build_object_store
from ray_rag_dagster.backends.enrich import REDACTED
from ray_rag_dagster.defs.checks import check_no_pii_left
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.enrich import redact_chunk_fields, run_enrich
from ray_rag_dagster.stages.manifest import DocumentRef

DOCUMENT = DocumentRef(document_id="contacts-0a1b2c3d", version="5550142617abcdef", source_key="input/contacts.pdf")
HEADING = "7. Safety Desk safety.desk@example-trials.org (617) 555-0163"
SECRETS = ("safety.desk", "555-0163", "555 0142", "john.smith", "219-09", "6789")


def chunk(index: int, text: str, heading_path: list[str]) -> dict:
    return {
        "document_id": DOCUMENT.document_id,
        "version": DOCUMENT.version,
        "chunk_index": index,
        "text": text,
        "page_start": 4,
        "page_end": 4,
        "heading_path": heading_path,
        "content_hash": f"{index:04d}6175550142",  # digits that must not be taken for a phone number
        "kinds": ["paragraph", "table"],
        "table_part": None,
    }


CHUNKS = [
    chunk(0, "Serious adverse events are reported to the safety desk within 24 hours.", ["Contacts", HEADING]),
    chunk(
        1,
        "| Service | Contact | Contact (continued) |\n|---|---|---|\n| Emergency line | +1 617 | 555 0142 |\n\n"
        "Out-of-hours monitor: Dr. John Smith, john.smith@\nexample.org.\n\nBack-up SSN 123-45-\n6789.",
        ["Contacts", HEADING],
    ),
    chunk(2, "Metformin 1000 mg twice daily; HbA1c 7.0% to 10.5%; Page 12 of 73.", ["4. Study Drug"]),
]


@pytest.fixture
def enriched(tmp_path: Path) -> tuple[Settings, dict, list[dict]]:
    settings = Settings(home=tmp_path)
    store = build_object_store(settings)
    store.put_jsonl(keys.chunks(DOCUMENT), CHUNKS)
    output = run_enrich(settings, DOCUMENT)
    return settings, output.model_dump(), store.get_jsonl(output.key)


def test_every_field_of_every_row_is_redacted(enriched: tuple[Settings, dict, list[dict]]) -> None:
    _, manifest, rows = enriched
    dump = json.dumps(rows)
    assert not [secret for secret in SECRETS if secret in dump], dump
    for row in rows[:2]:
        assert row["heading_path"] == ["Contacts", f"7. Safety Desk {REDACTED} {REDACTED}"]
    assert rows[2]["heading_path"] == ["4. Study Drug"]
    assert "| Emergency line | [REDACTED] | [REDACTED] |" in rows[1]["text"]
    # Counts by kind, text and heading path together; never values.
    assert rows[0]["redactions"] == {"email": 1, "phone": 1}
    assert rows[1]["redactions"] == {"email": 2, "phone": 2, "ssn": 1}
    assert rows[2]["redactions"] == {}
    counts = manifest["counts"]
    assert (counts["redactions_email"], counts["redactions_phone"], counts["redactions_ssn"]) == (3, 3, 1)
    assert counts["redactions"] == 7


def test_identifiers_and_structure_pass_unchanged(enriched: tuple[Settings, dict, list[dict]]) -> None:
    _, _, rows = enriched
    for source, row in zip(CHUNKS, rows, strict=True):
        for key in ("document_id", "version", "content_hash", "chunk_index", "page_start", "kinds", "table_part"):
            assert row[key] == source[key]
        assert isinstance(row["heading_path"], list) and all(isinstance(h, str) for h in row["heading_path"])
    assert rows[1]["entities"]["people"] == ["John Smith"]
    assert rows[2]["entities"]["medications"] == ["metformin"]


def test_redact_chunk_fields_leaves_the_text_to_the_enricher() -> None:
    redacted, counts = redact_chunk_fields(CHUNKS[1])
    assert redacted["text"] == CHUNKS[1]["text"]
    assert redacted["heading_path"][1] == f"7. Safety Desk {REDACTED} {REDACTED}"
    assert counts == {"email": 1, "phone": 1}


def test_no_pii_left_passes_on_the_stage_output(enriched: tuple[Settings, dict, list[dict]]) -> None:
    settings, manifest, _ = enriched
    outcome = check_no_pii_left(settings, manifest)
    assert outcome.passed, outcome.description
    assert outcome.metadata["chunks_with_pii"] == 0


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("heading_path", ["Contacts", HEADING], "email"),
        ("heading_path", ["Desk +1", "617 555 0142"], "phone"),  # split over two headings
        ("text", "Out-of-hours: +1\n617 555 0142.", "phone"),  # what cell-by-cell redaction left
        ("text", "| Phone | +1 617 | 555 0142 |", "phone"),
        ("text", "SSN on file: 123-45-\n6789.", "ssn"),
        ("entities", {"people": ["Smith john.smith@example.org"], "organizations": [], "medications": []}, "email"),
        ("key_phrases", ["call (617) 555-0147"], "phone"),
    ],
)
def test_no_pii_left_fails_on_pii_in_any_field_without_leaking_it(
    enriched: tuple[Settings, dict, list[dict]], field: str, value: object, kind: str
) -> None:
    settings, manifest, rows = enriched
    rows[2][field] = value
    build_object_store(settings).put_jsonl(manifest["key"], rows)
    outcome = check_no_pii_left(settings, manifest)
    assert not outcome.passed
    assert outcome.metadata["chunks_with_pii"] == 1
    assert outcome.metadata["chunk_indices"] == "2"
    assert outcome.metadata[f"pii_left_{kind}"] >= 1
    assert outcome.metadata[f"chunks_with_pii_in_{field}"] == 1
    shown = f"{outcome.description} {outcome.metadata}"
    assert not [secret for secret in (*SECRETS, "0147") if secret in shown]
