"""The everyday commands: search's passage, status at 80 columns and as JSON, and what they import."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from ray_rag_dagster.backends.sqlite_status_store import SqliteStatusStore
from ray_rag_dagster.cli import snippet
from ray_rag_dagster.cli_search import ago, lease_text, print_status
from ray_rag_dagster.ids import document_id_for
from ray_rag_dagster.passages import matched_passage

LONG_NAME = "EliLilly_NCT03421379_Diabetes.pdf"
FILES = (LONG_NAME, "Roche_BP30037_V3.pdf", "locked.pdf")
HEAVY = ("dagster", "ray", "docling", "torch")


def test_snippet_shows_the_part_that_matched() -> None:
    text = "Schedule of activities. " * 40 + "6. Contact Information: phone [REDACTED], email [REDACTED]. " + "Filler. " * 40
    shown = snippet(text, "contact information phone email", width=200)
    assert "Contact Information" in shown and shown.startswith("… ") and shown.endswith(" …")
    assert len(shown) <= 204
    assert snippet("short text", "anything") == "short text"


def test_passage_highlights_the_question_words() -> None:
    text = "Inclusion Criteria: age 18 to 75; doses of 150 mg. The criterion of HbA1c is 7.0%."
    passage = matched_passage(text, "What is the inclusion criterion for age and dose, HbA1c?")
    marked = [passage.text[start:end] for start, end in passage.highlights]
    assert marked == ["Inclusion", "age", "doses", "criterion", "HbA1c"]  # "the", "is", "for" are not marked


def test_times_read_as_a_person_says_them() -> None:
    assert ago(2) == "just now" and ago(42) == "42 s ago" and ago(125) == "2 min ago"
    assert ago(5 * 3600 + 10) == "5 h ago" and ago(3 * 86400) == "3 d ago"
    now = 1_000_000.0
    assert lease_text(now + 12 * 60 + 5, now) == "expires in 12 min"
    assert lease_text(now - 180, now) == "expired 3 min ago"
    assert lease_text(None, now) == ""


@pytest.fixture()
def status_home(tmp_path: Path) -> Path:
    """A status store with a completed, a failed and an in-progress document (with a lease)."""
    store = SqliteStatusStore(tmp_path / "status.sqlite")
    done, failed, running = (document_id_for(f"input/{name}") for name in (FILES[0], FILES[2], FILES[1]))
    store.register(done, "v1", f"input/{FILES[0]}")
    store.claim(done, "v1", "cli-1", 3600, reprocess=False)
    store.record_stage(done, "v1", "extract", pages=212, seconds=95.5)
    store.record_stage(done, "v1", "chunk", chunks=1034)
    store.record_stage(done, "v1", "load", vectors=1034)
    store.complete(done, "v1")
    store.register(failed, "v1", f"input/{FILES[2]}")
    store.claim(failed, "v1", "cli-1", 3600, reprocess=False)
    store.fail(failed, "v1", "extract", f"{FILES[2]}: password-protected PDF; a long reason that goes on " * 2)
    store.register(running, "v1", f"input/{FILES[1]}")
    store.claim(running, "v1", "sensor-abc123", 12 * 60 + 30, reprocess=False)
    store.record_stage(running, "v1", "extract", pages=40)
    return tmp_path


def _check_80_columns(output: str) -> None:
    lines = output.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, output
    header = next(line for line in lines if "document" in line and "status" in line)
    assert re.findall(r"\w+", header) == ["document", "status", "stage", "pages", "chunks", "updated"], header
    for name in FILES:  # each file name whole on one line: no cell wrapped into narrow columns
        assert any(name in line for line in lines), (name, output)
    assert "expires in 12 min" in output and "held by sensor-abc123" in output
    assert "password-protected PDF" in output
    assert "just now" in output
    assert not re.search(r"\b1\d{9}(\.\d+)?\b", output), "a raw epoch time"


def test_status_is_legible_in_80_columns(status_home: Path) -> None:
    store = SqliteStatusStore(status_home / "status.sqlite")
    buffer = io.StringIO()
    console = Console(width=80, file=buffer, color_system=None)
    print_status(console, store.documents(), store.metrics(), time.time(), title=f"Documents ({store.path})")
    _check_80_columns(buffer.getvalue())

    wide = io.StringIO()
    print_status(Console(width=160, file=wide, color_system=None), store.documents(), store.metrics(), time.time())
    assert document_id_for(f"input/{FILES[0]}") in wide.getvalue() and "1034" in wide.getvalue() and "95.5" in wide.getvalue()


def _ray_rag(*args: str, home: Path, columns: int = 80, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from ray_rag_dagster.launcher import main\n"
        f"sys.argv = ['ray-rag', *{list(args)!r}]\n"
        "try:\n    main()\n"
        "finally:\n"
        f"    print('IMPORTED', sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r})), file=sys.stderr)\n"
    )
    env = {**os.environ, "RAY_RAG_HOME": str(home), "COLUMNS": str(columns), "TERM": "dumb"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False, input=answer)


def test_status_command_at_80_columns_and_as_json(status_home: Path) -> None:
    result = _ray_rag("status", home=status_home)
    assert result.returncode == 0, result.stderr
    _check_80_columns(result.stdout)
    assert "IMPORTED []" in result.stderr, result.stderr

    result = _ray_rag("status", "--json", home=status_home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_file = {document["source_file"]: document for document in report["documents"]}
    assert set(by_file) == set(FILES)
    running = by_file[FILES[1]]
    assert running["status"] == "IN_PROGRESS" and running["owner"] == "sensor-abc123"
    assert 11 * 60 < running["lease_seconds_left"] <= 12 * 60 + 30
    assert running["lease_expires_at"].endswith("+00:00")
    assert by_file[FILES[0]]["counts"]["chunks"] == 1034 and by_file[FILES[0]]["updated_seconds_ago"] < 60
    assert by_file[FILES[2]]["status"] == "FAILED" and "password-protected" in by_file[FILES[2]]["error"]
    assert report["daily_totals"][0]["documents_completed"] == 1


def test_help_and_search_import_no_pipeline_code(tmp_path: Path) -> None:
    result = _ray_rag("--help", home=tmp_path)
    assert "serve" in result.stdout and "search" in result.stdout and "ingest" in result.stdout
    assert "IMPORTED []" in result.stderr, result.stderr
    result = _ray_rag("search", "anything", "--json", home=tmp_path)  # nothing indexed: no model loads
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr
    assert "IMPORTED []" in result.stderr, result.stderr


@pytest.fixture()
def private_cluster_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`reset` stops the local Ray cluster: point it at a registry of none, never the test session's."""
    monkeypatch.setenv("RAY_RAG_CLUSTER_DIR", str(tmp_path / "no-cluster"))


def _state_folder(home: Path) -> list[str]:
    """A state folder as a run leaves it: inbox PDFs (one in a subfolder), models, outputs, index, status."""
    files = ["objects/input/protocol.pdf", "objects/input/site-b/protocol.pdf", "models/all-MiniLM-L6-v2/model.onnx",
             "objects/extracted/protocol-0a1b2c3d/v1/pages.json", "lancedb/chunks.lance/data.lance",
             "dagster/dagster.yaml", "serve.json"]
    for name in files:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_bytes(b"%PDF-1.4" if name.endswith(".pdf") else b"{}")
    SqliteStatusStore(home / "status.sqlite").register("protocol-0a1b2c3d", "v1", "input/protocol.pdf")
    return files


def _files(home: Path) -> set[str]:
    # Not SQLite's -wal/-shm files: they go whenever the last connection closes (garbage collection).
    return {str(path.relative_to(home)) for path in home.rglob("*")
            if path.is_file() and not path.name.endswith(("-wal", "-shm"))}


def test_reset_keeps_the_inbox_and_models_and_asks_first(tmp_path: Path, private_cluster_dir: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_RAG_MODEL_CACHE")  # the models in the state folder, as a user has them
    home = tmp_path / "home"
    files = _state_folder(home)
    before = _files(home)
    assert "status.sqlite" in before
    declined = _ray_rag("reset", home=home, answer="n\n")
    assert declined.returncode == 1 and "Delete everything in" in declined.stdout, declined.stdout
    assert _files(home) == before

    result = _ray_rag("reset", "--yes", home=home)
    assert result.returncode == 0, result.stderr
    assert _files(home) == set(files[:3])

    result = _ray_rag("reset", "--yes", "--all", home=home)
    assert result.returncode == 0 and not home.exists(), result.stderr


def test_state_with_old_document_ids_is_refused_until_reset(tmp_path: Path, private_cluster_dir: None) -> None:
    """A state folder from before readable ids (``doc_<12 hex>``): ingest and dev refuse, naming the command
    that rebuilds it, and change nothing; `ray-rag reset` removes the old ids."""
    home = tmp_path / "home"
    SqliteStatusStore(home / "status.sqlite").register("doc_0123456789ab", "v1", "input/protocol.pdf")
    pdf = tmp_path / "protocol.pdf"
    pdf.write_bytes(b"%PDF-1.4 not a real one")
    for args in (("ingest", str(pdf)), ("dev",)):
        refused = _ray_rag(*args, home=home)
        message = " ".join(refused.stdout.split())
        assert refused.returncode == 1 and "'doc_0123456789ab'" in message and "Run `ray-rag reset`" in message, (
            args, refused.stdout, refused.stderr[-2000:])
    assert not (home / "objects" / "input").exists()  # nothing was copied into the inbox

    assert SqliteStatusStore(home / "status.sqlite").get("doc_0123456789ab").status == "PENDING"
    assert _ray_rag("reset", "--yes", home=home).returncode == 0
    assert not (home / "status.sqlite").exists()
