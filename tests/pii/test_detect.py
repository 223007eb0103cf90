"""The independent PII detector (:func:`ray_rag_dagster.pii.find_pii`): it finds what the redactor is meant to
remove, including values split across breaks and cells, catches what the old cell-by-cell redaction left,
never returns values, and finds nothing in real clinical text."""

from collections import Counter

import pytest

from ray_rag_dagster.backends.enrich import REDACTED, redact_pii
from ray_rag_dagster.pii import DETECTED_KINDS, find_pii
from ray_rag_dagster.pii.detect import views
from tests.backends.enrich.test_pii import OLD_MISSES, SPLIT_CASES, cell_by_cell
from tests.pii.clinical import as_table, protocol_pages, require_protocols, risky_lines

# The detector has no date-of-birth recognizer (Presidio's needs an NLP engine for context).
DETECTABLE_SPLITS = [case for case in SPLIT_CASES if case[1] != "dob"]


def test_detector_shares_no_code_with_the_redactor() -> None:
    import ast
    import inspect

    import ray_rag_dagster.pii.detect as detect

    tree = ast.parse(inspect.getsource(detect))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name.startswith("ray_rag_dagster") or name == "phonenumbers"]
    assert "presidio_analyzer" in imported


def test_presidio_loads_without_hiding_torch_for_good() -> None:
    import sys

    find_pii("call (617) 555-0147")
    assert sys.modules.get("torch", "absent") is not None  # imported, or importable: never left blocked
    import torch  # noqa: F401  (works after the detector loaded Presidio)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Write to jane.doe@example-trials.org today.", "email"),
        ("Reserved domains count: medmon@examplar-tx.example.", "email"),
        ("Call (555) 201-4477 after 5 pm.", "phone"),
        ("Call 617-555-0147.", "phone"),
        ("Call 617.555.0147.", "phone"),
        ("Tel: 617 555 0147.", "phone"),
        ("London office +44 20 7946 0958.", "phone"),
        ("SSN 078-05-1120 on file.", "ssn"),  # a published sample number is still an SSN in a document
        ("SSN 123-45-6789 on file.", "ssn"),
        ("Social Security Number: 219 09 9999.", "ssn"),
        ("SSN on file: 219-099999.", "ssn"),
        ("Card 4111 1111 1111 1111 on file.", "credit_card"),
    ],
)
def test_finds_pii(text: str, kind: str) -> None:
    assert find_pii(text) == Counter({kind: 1})


@pytest.mark.parametrize(("text", "kind", "pieces"), DETECTABLE_SPLITS)
def test_finds_values_split_across_breaks_and_cells(text: str, kind: str, pieces: list[str]) -> None:
    assert find_pii(text)[kind] == 1


# Each case but the one where what the old way left ("john.") identifies no one.
@pytest.mark.parametrize(
    ("text", "kind", "pieces"), [case for case in OLD_MISSES if case[1] != "dob" and "john.\nsmith" not in case[0]]
)
def test_catches_what_cell_by_cell_redaction_missed(text: str, kind: str, pieces: list[str]) -> None:
    """The check's reason to exist: re-running the old redactor on its own output found nothing here."""
    left = cell_by_cell(text)
    assert find_pii(left)[kind] >= 1, left


@pytest.mark.parametrize(("text", "kind", "pieces"), SPLIT_CASES)
def test_finds_nothing_after_redaction(text: str, kind: str, pieces: list[str]) -> None:
    assert find_pii(redact_pii(text)[0]) == Counter()


def test_views_rejoin_breaks_and_cells() -> None:
    assert views("| Phone | +1 617 |\n|---|---|\n| | 555 0142 |")[1] == "Phone +1 617 555 0142"
    assert views("john.smith@\nexample.org, 123-45-\n6789")[2] == "john.smith@example.org, 123-45-6789"
    assert views("john.\nsmith@example.org")[2] == "john.smith@example.org"


def test_counts_kinds_never_values() -> None:
    found = find_pii("Mail jane.doe@example-trials.org or call (617) 555-0147; SSN 219-09-9999.")
    assert found == Counter({"email": 1, "phone": 1, "ssn": 1})
    assert set(found) <= set(DETECTED_KINDS)
    assert all(isinstance(count, int) for count in found.values())
    assert find_pii("") == Counter() and find_pii(REDACTED) == Counter()


@pytest.mark.parametrize(
    "text",
    [
        "Protocol I8R-JE-IGBJ, NCT03421379, Protocol ABC-123, EudraCT 2017-004512-33.",
        "Study code 2017-0045-12 and lot 20170045.",
        "Page 12 of 73. Approval Date: 05-Dec-2017. Visit on 2024-03-15 or 03/15/2024.",
        "Metformin 1000 mg twice daily; insulin glargine 10 units; examplumab 150 mg; 10 mg/kg.",
        "HbA1c 7.0% to 10.5%, eGFR 45 mL/min/1.73 m2, platelets 150,000-450,000/uL, 120/80 mmHg.",
        "Potassium 3.5-5.0 mmol/L; sodium 135-145 mmol/L.",
        "Change from baseline -0.5% (95% CI -0.8 to -0.2), +1.2 kg, 2.0 x 10^9/L.",
        "Diabetes Care. 2013;36(5):1384-1395. doi:10.2337/dc12-2480",
        "Ann Rheum Dis. 2015;74:1645–1650.",
        "9.2.2 Dosing ........................................36 9.2.2.1. Nasal LY900018 Administration",
        "ISBN 978-3-16-148410-0, bare digits 1234567890.",
        "Randomized Treated Year 240 80 2024",
        "Screened Randomized Planned 240 238 1500",
        "| VISIT | 1 | -2 | 2 | -.3 | 3 4 5 7 8 8 |\n| ACTIVITY WEEK | X | 0 | 2 |",
        "| Randomized | Treated | Year |\n|---|---|---|\n| 240 | 80 | 2024 |",
        "| Change | +1.2 | 240 | 80 | 2024 |",
        "Dose 10 mg/kg\n3.5-5.0 mmol/L\nNCT03421379\nPage 12 of 73",
    ],
)
def test_leaves_clinical_numbers_alone(text: str) -> None:
    assert find_pii(text) == Counter()


def test_nothing_found_in_the_real_protocols() -> None:
    """The real protocols hold no personal data: the check must pass on them (as is, and as table cells)."""
    require_protocols()
    found = []
    for name, pages in protocol_pages().items():
        for number, page in enumerate(pages, start=1):
            for layout in (page, as_table(page)):
                if counts := find_pii(layout):
                    found.append((name, number, dict(counts)))
    assert found == []


def test_nothing_found_in_risky_clinical_lines() -> None:
    require_protocols()
    for shape, lines in risky_lines().items():
        for line in lines:
            assert find_pii(line) == Counter(), (shape, line)
