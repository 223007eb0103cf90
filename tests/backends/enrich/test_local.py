"""The local enricher: its contract, entities, key phrases, and that no PII survives anywhere in its result."""

import pathlib
import pickle

import pypdfium2 as pdfium
import pytest

from ray_rag_dagster.backends.enrich import (
    Enricher,
    Enrichment,
    LocalEnricher,
    find_medications,
    find_organizations,
    find_people,
    without_pii,
)
from ray_rag_dagster.samples import SEEDED_PII, seeded_pii_leaks, write_samples

CONTACT = """## Contact Information
Site coordinator: Dr. Jane Doe, Riverside Clinical Research Institute.
Principal Investigator: John A. Smith, MD, PhD. Questions to Dr. Smith.
Email jane.doe@example-trials.org, phone (555) 201-4477 or +44 20 7946 0958. SSN 078-05-1120.
"""


@pytest.fixture(scope="module")
def enricher() -> LocalEnricher:
    return LocalEnricher()


def test_enrich_contract(enricher: LocalEnricher) -> None:
    assert isinstance(enricher, Enricher)
    assert enricher.name == "local"
    results = enricher.enrich([CONTACT, "", "Plain text."])
    assert len(results) == 3
    assert all(isinstance(r, Enrichment) and r.enricher == "local" for r in results)
    assert all(set(r.entities) == {"people", "organizations", "medications"} for r in results)
    assert results[1] == Enrichment(
        redacted_text="",
        redactions={},
        entities={"people": [], "organizations": [], "medications": []},
        key_phrases=[],
        enricher="local",
    )


def test_no_pii_survives_anywhere(enricher: LocalEnricher) -> None:
    (result,) = enricher.enrich([CONTACT])
    assert result.redactions == {"email": 1, "ssn": 1, "phone": 2}
    dumped = result.model_dump_json()
    for secret in ("jane.doe@example-trials.org", "201-4477", "7946 0958", "078-05-1120"):
        assert secret not in dumped
    assert all("REDACTED" not in phrase.upper() for phrase in result.key_phrases)
    assert result.entities["people"] == ["Jane Doe", "John A. Smith"]
    assert result.entities["organizations"] == ["Riverside Clinical Research Institute"]


SPLIT = """## Contacts

| Service | Contact | Contact (continued) |
|---|---|---|
| Emergency line, Dr. Jane Doe | +1 617 | 555 0142 |
| Pharmacovigilance, Examplar Pharmaceuticals, Inc. | pv.reports@ | examplar-tx.example |

Out-of-hours monitor John A. Smith, MD: +1
617 555 0199, or write to john.smith@
example.org. Back-up SSN 123-45-
6789 on file.
"""


def test_split_values_reach_no_entity_or_phrase(enricher: LocalEnricher) -> None:
    (result,) = enricher.enrich([SPLIT])
    assert result.redactions == {"email": 2, "phone": 2, "ssn": 1}
    dumped = result.model_dump_json()
    for piece in ("555 0142", "pv.reports", "617 555 0199", "john.smith", "example.org", "123-45", "6789"):
        assert piece not in dumped, piece
    assert result.entities["people"] == ["Jane Doe", "John A. Smith"]
    assert [org.startswith("Examplar Pharmaceuticals") for org in result.entities["organizations"]] == [True]
    assert all("REDACTED" not in phrase.upper() for phrase in result.key_phrases)


def test_without_pii_drops_items_that_hold_a_value() -> None:
    items = ["Jane Doe", "Desk +1 617 555 0142", "john.smith@ example.org", "metformin 1000 mg"]
    assert without_pii(items) == ["Jane Doe", "metformin 1000 mg"]


def test_sample_protocol_leaks_no_seeded_pii(enricher: LocalEnricher, tmp_path: pathlib.Path) -> None:
    protocol, _ = write_samples(tmp_path)
    pdf = pdfium.PdfDocument(protocol)
    text = "\n".join(page.get_textpage().get_text_range() for page in pdf)
    pdf.close()
    results = enricher.enrich([text[i : i + 1500] for i in range(0, len(text), 1500)])
    dumped = "".join(r.model_dump_json() for r in results)
    assert not [secret for secret in SEEDED_PII if secret in dumped]
    # Chunks cut at fixed offsets may halve a value; what is left of a split one must not be rejoinable.
    assert not [leak for leak in seeded_pii_leaks(dumped) if leak not in SEEDED_PII]
    assert sum(sum(r.redactions.values()) for r in results) >= len(SEEDED_PII)


def test_people() -> None:
    text = (
        "Prof. Maria Garcia-Lopez and Alan Example, MD reviewed it. Medical Monitor, MD on call. "
        "Sub-investigator: Li Wei. The Study Director signed."
    )
    assert find_people(text) == ["Maria Garcia-Lopez", "Alan Example", "Li Wei"]


def test_organizations() -> None:
    text = (
        "It is the property of Eli Lilly and\nCompany or its subsidiaries. Sponsor: Examplar Pharmaceuticals, "
        "Inc. with Novo Nordisk A/S at Massachusetts General Hospital, the University of Exampleton and the "
        "National Institute on Aging. References\nAmerican Diabetes Association. The Hospital will call."
    )
    assert find_organizations(text) == [
        "Eli Lilly and Company",
        "Examplar Pharmaceuticals, Inc.",
        "Novo Nordisk A/S",
        "Massachusetts General Hospital",
        "University of Exampleton",
        "National Institute on Aging",
        "American Diabetes Association",
    ]


def test_medications() -> None:
    text = (
        "Background metformin (Glucophage) continues; rescue insulin glargine (Lantus) per protocol. "
        "Oral hypoglycemic agents and antibodies are classes, not drugs. Alkaline phosphatase is a lab test; "
        "a curriculum vitae is not a drug. Metformin again."
    )
    assert find_medications(text) == ["metformin", "insulin glargine"]


def test_key_phrases(enricher: LocalEnricher) -> None:
    text = (
        "Examplumab is administered as a subcutaneous injection once weekly. Subcutaneous injection sites "
        "rotate between abdomen and thigh. Injection-site reactions are recorded at every visit, and "
        "severe injection-site reactions lead to discontinuation of examplumab."
    )
    (result,) = enricher.enrich([text])
    assert 1 <= len(result.key_phrases) <= 5
    assert any("injection" in phrase.lower() for phrase in result.key_phrases)


def test_pickles_for_ray_workers(enricher: LocalEnricher) -> None:
    clone = pickle.loads(pickle.dumps(enricher))
    assert clone.enrich([CONTACT]) == enricher.enrich([CONTACT])


def test_the_old_module_path_still_imports() -> None:
    """Code written before the split (``backends.enricher``) keeps working."""
    from ray_rag_dagster.backends import enricher
    from ray_rag_dagster.backends.enrich import LocalEnricher as Moved

    assert enricher.LocalEnricher is Moved and callable(enricher.redact_pii)
