"""Trouble from outside: an OpenAI rate-limit storm past the retry budget, personal data in the awkward
places of a PDF (a heading, table cells, values broken over lines), and PDFs over the page or size cap."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from ray_rag_dagster.backends import build_object_store, build_status_store, build_vector_index
from ray_rag_dagster.backends.enrich import REDACTED
from ray_rag_dagster.backends.status_store import COMPLETED, FAILED
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.ingest import ingest_paths
from ray_rag_dagster.samples import SEEDED_PII, SEEDED_SPLIT_PII, seeded_pii_leaks, write_samples
from ray_rag_dagster.search import search_index
from ray_rag_dagster.settings import Settings, load_settings
from tests.conftest import PDFS
from tests.standins.openai_server import EMBEDDINGS_PATH, openai_server, rate_limited

from .harness import files_of
from .test_inbox_changes import index_rows

pytestmark = pytest.mark.slow

ONE_PAGE = PDFS / "docling" / "2305.03393v1-pg9.pdf"
OPENAI_KEY = "sk-storm-5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
# Questions whose best passages hold the seeded values (before redaction).
PII_QUESTIONS = (
    "contact information phone email site coordinator",
    "SAE desk serious adverse events reported by e-mail or telephone",
    "emergency unblinding line pharmacovigilance mailbox",
    "site coordinator identification on file SSN",
    "out-of-hours medical monitor back-up e-mail",
)
# The digits of every seeded phone number and SSN run together ("6175550147"), as a careless
# normalisation could store them.
SEEDED_DIGITS = [digits for value in (*SEEDED_PII, *SEEDED_SPLIT_PII) if len(digits := re.sub(r"\D", "", value)) >= 7]


def test_a_429_storm_past_the_retry_budget_fails_cleanly_and_a_rerun_completes(
    state: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with openai_server(OPENAI_KEY) as openai:
        for name, value in {"EMBEDDER": "openai", "OPENAI_BASE_URL": openai.base_url, "OPENAI_API_KEY": OPENAI_KEY,
                            "OPENAI_MAX_RETRIES": "2"}.items():
            monkeypatch.setenv(f"RAY_RAG_{name}", value)
        settings = load_settings()
        attempts = settings.openai_max_retries + 1
        openai.queue_faults(EMBEDDINGS_PATH, *[rate_limited(retry_after=None, retry_after_ms=50)] * attempts)
        document_id = document_id_for(f"input/{ONE_PAGE.name}")
        [failed] = ingest_paths(settings, [ONE_PAGE])
        status = build_status_store(settings)
        row = status.get(document_id)
        assert (failed.status, row.status, row.current_stage) == (FAILED, FAILED, "embed")
        assert row.error.startswith(f"{ONE_PAGE.name}: embed failed: "), row.error
        assert f"failed after {attempts} attempts: HTTP 429 rate_limit_exceeded" in row.error
        assert "\n" not in row.error and "Traceback" not in row.error and OPENAI_KEY not in row.error
        assert openai.request_count(EMBEDDINGS_PATH, status=429) == attempts  # the budget, no more
        assert build_vector_index(settings).count(document_id) == 0
        [run] = dg.DagsterInstance.get().get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE

        [rerun] = ingest_paths(settings, [ONE_PAGE])  # the storm is over
        assert (rerun.status, rerun.detail) == (COMPLETED, "")
        rows = index_rows(settings, document_id)
        assert rows and {row["embed_model"] for row in rows} == {"text-embedding-3-small"}


def test_seeded_pii_is_nowhere_outside_the_raw_text_prefixes(state: Settings, tmp_path: Path) -> None:
    [protocol, _] = write_samples(tmp_path)
    [outcome] = ingest_paths(state, [protocol])
    assert (outcome.status, outcome.detail) == (COMPLETED, "")
    document_id = outcome.document_id
    store = build_object_store(state)
    status = build_status_store(state)
    instance = dg.DagsterInstance.get()
    rows = index_rows(state, document_id)
    places = {
        "search results": json.dumps([hit.__dict__ for question in PII_QUESTIONS
                                      for hit in search_index(state, question, k=10)], default=str),
        "index": json.dumps([{key: value for key, value in row.items() if key != "vector"} for row in rows]),
        "status store": json.dumps([row.__dict__ for row in status.documents()] + status.audit(document_id), default=str),
        "Dagster event log": "\n".join(str(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)),
    }
    raw = []
    for key in files_of(state, document_id):
        text = store.get_bytes(key).decode("utf-8", errors="replace")
        if key.startswith(("extracted/", "chunks/")):
            raw.append(text)  # raw text by design (short lifecycle): the seeded values are there
        else:
            places[key] = text
    assert {key.split("/")[0] for key in places if "/" in key} == {"enriched", "embeddings"}
    assert set(seeded_pii_leaks("\n".join(raw))) == {*SEEDED_PII, *SEEDED_SPLIT_PII}
    for place, text in places.items():
        assert seeded_pii_leaks(text) == [], place
        assert [digits for digits in SEEDED_DIGITS if digits in text] == [], place
    assert REDACTED in " ".join(row["text"] for row in rows)
    assert any(REDACTED in row["heading_path"] for row in rows)  # the heading that held an e-mail and a phone


@pytest.mark.parametrize(
    ("cap", "pdf", "reason"),
    [
        ({"RAY_RAG_MAX_PAGES": "3"}, PDFS / "docling" / "normal_4pages.pdf", "4 pages is over the 3-page limit"),
        ({"RAY_RAG_MAX_DOCUMENT_MB": "1"}, PDFS / "clinical" / "Roche_BP30037_V3.pdf", "MB is over the 1 MB limit"),
    ],
    ids=["pages", "size"],
)
def test_a_pdf_over_a_cap_fails_with_the_reason(
    state: Settings, monkeypatch: pytest.MonkeyPatch, cap: dict[str, str], pdf: Path, reason: str
) -> None:
    for name, value in cap.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    [outcome] = ingest_paths(settings, [pdf])
    row = build_status_store(settings).get(outcome.document_id)
    assert (outcome.status, row.status, row.current_stage) == (FAILED, FAILED, "extract")
    assert row.error.startswith(f"{pdf.name}: ") and reason in row.error and "\n" not in row.error, row.error
    assert files_of(settings, outcome.document_id) == []
    assert build_vector_index(settings).count(outcome.document_id) == 0
    instance = dg.DagsterInstance.get()
    [run] = instance.get_runs()
    assert run.status == dg.DagsterRunStatus.FAILURE
    [failure] = [entry.dagster_event for entry in instance.all_logs(run.run_id)
                 if entry.dagster_event is not None and entry.dagster_event.is_step_failure]
    assert row.error in str(failure.step_failure_data.user_failure_data.description)
