"""A small real index for the search service: the generated sample protocol, without running the pipeline.

Each page's text layer (pypdfium2) is cut into paragraph chunks, embedded with the configured embedder and
loaded with the vector index backend; the PDF sits in the object store's inbox like an ingested one. One
extra document holds HTML in its text, for the page's escaping test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ray_rag_dagster.backends import build_embedder, build_object_store, build_vector_index
from ray_rag_dagster.backends.enrich import redact_pii
from ray_rag_dagster.backends.vector_index import IndexRecord
from ray_rag_dagster.ids import chunk_id, content_hash, document_id_for
from ray_rag_dagster.samples import PROTOCOL_FILENAME, write_samples
from ray_rag_dagster.serve.client import find_server, server_file
from ray_rag_dagster.settings import Settings

INJECTION_FILE = "injection_test.pdf"
INJECTION_TEXT = (
    "Injection probe: dosing note <img src=x onerror=\"window.__injected = 1\"> and "
    "<script>window.__injected = 2</script> <b>bold?</b> must show as plain text."
)


@dataclass(frozen=True)
class SearchState:
    settings: Settings
    protocol_id: str
    injection_id: str
    chunks: int


def page_chunks(pdf: Path, target: int = 700) -> list[tuple[int, str]]:
    """(page number, text) chunks: each page's paragraphs grouped to about ``target`` characters."""
    import pypdfium2

    chunks: list[tuple[int, str]] = []
    document = pypdfium2.PdfDocument(str(pdf))
    try:
        for number, page in enumerate(document, start=1):
            text = page.get_textpage().get_text_range().replace("\r\n", "\n")
            paragraphs = [re.sub(r"\s+", " ", part).strip() for part in re.split(r"\n(?=[A-Z0-9])", text)]
            current = ""
            for paragraph in filter(None, paragraphs):
                if current and len(current) + len(paragraph) > target:
                    chunks.append((number, current))
                    current = ""
                current = f"{current} {paragraph}".strip()
            if current:
                chunks.append((number, current))
    finally:
        document.close()
    return chunks


def _records(settings: Settings, document_id: str, key: str, chunks: list[tuple[int, str, str]]) -> list[IndexRecord]:
    embedder = build_embedder(settings)
    vectors = embedder.embed_documents([text for _, _, text in chunks]).vectors
    records = []
    for index, ((page, heading, text), vector) in enumerate(zip(chunks, vectors, strict=True)):
        digest = content_hash(text)
        records.append(IndexRecord(
            id=chunk_id(document_id, digest, index), document_id=document_id, processing_version="test",
            source_key=key, chunk_index=index, page_start=page, page_end=page, heading_path=heading, text=text,
            content_hash=digest, entities={}, key_phrases=[], redactions={}, embed_model=embedder.name,
            vector=vector,
        ))
    return records


def build_search_state(home: Path, inputs: Path) -> SearchState:
    settings = Settings(home=home)  # models from the session's model cache (tests/conftest.py)
    store = build_object_store(settings)
    index = build_vector_index(settings)
    protocol = write_samples(inputs)[0]
    assert protocol.name == PROTOCOL_FILENAME
    key = f"input/{protocol.name}"
    store.put_bytes(key, protocol.read_bytes())
    protocol_id = document_id_for(key)
    # Redacted as the enrich stage does: nothing downstream of it sees the seeded PII.
    chunks = [(page, f"Study ABC-123 > page {page}", redact_pii(text)[0]) for page, text in page_chunks(protocol)]
    index.replace_document(protocol_id, _records(settings, protocol_id, key, chunks))

    injection_key = f"input/{INJECTION_FILE}"
    store.put_bytes(injection_key, protocol.read_bytes())  # any PDF: the test only opens the protocol's
    injection_id = document_id_for(injection_key)
    index.replace_document(
        injection_id, _records(settings, injection_id, injection_key, [(1, "<i>Heading</i> & notes", INJECTION_TEXT)])
    )
    return SearchState(settings, protocol_id, injection_id, len(chunks) + 1)


@pytest.fixture(scope="session")
def search_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchState]:
    home = tmp_path_factory.mktemp("serve_home")
    yield build_search_state(home, tmp_path_factory.mktemp("serve_inputs"))


ARTIFACTS = Path(os.environ.get("SERVE_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts" / "serve")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.log")]:
        stale.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(search_state: SearchState, artifacts: Path) -> Iterator[str]:
    """``ray-rag serve --port 0`` on the test index, as a user starts it; yields the URL from its server file."""
    home = search_state.settings.home
    env = {**os.environ, "RAY_RAG_HOME": str(home)}
    log_path = artifacts / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ray_rag_dagster.launcher", "serve", "--port", "0"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None:
            if process.poll() is not None:
                pytest.fail(f"ray-rag serve exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"ray-rag serve did not come up in 120 s: {log_path.read_text()[-2000:]}")
            url = find_server(home)
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log_path.read_text()[-2000:]
    assert not server_file(home).exists(), "the server file outlived the server"
