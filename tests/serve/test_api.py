"""The search API in-process (FastAPI's test client) on a small real index."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ray_rag_dagster.serve.app import create_app
from tests.serve.conftest import INJECTION_TEXT, SearchState


@pytest.fixture(scope="module")
def client(search_state: SearchState) -> TestClient:
    return TestClient(create_app(search_state.settings))


def test_search_returns_hits_with_the_matched_passage(client: TestClient, search_state: SearchState) -> None:
    response = client.get("/api/search", params={"q": "inclusion criteria age", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "inclusion criteria age" and body["k"] == 3 and body["took_ms"] > 0
    assert len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["rank"] == 1 and top["document_id"] == search_state.protocol_id
    assert top["source_file"] == "synthetic_protocol_ABC-123.pdf" and top["source_key"] == "input/" + top["source_file"]
    assert "Age 18 to 75 years" in top["text"]
    assert top["pdf_url"] == f"/pdf/{search_state.protocol_id}#page={top['page_start']}"
    passage = top["passage"]
    assert top["text"][passage["start"] : passage["end"]] == passage["text"]
    marked = {passage["text"][start:end].lower() for start, end in passage["highlights"]}
    assert {"inclusion", "criteria", "age"} <= marked
    scores = [hit["score"] for hit in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_validates_its_parameters(client: TestClient) -> None:
    assert client.get("/api/search", params={"q": ""}).status_code == 422
    assert client.get("/api/search", params={"q": "age", "k": 0}).status_code == 422
    assert client.get("/api/search", params={"q": "age", "k": 51}).status_code == 422
    assert client.get("/api/search").status_code == 422


def test_search_returns_chunk_text_as_data(client: TestClient, search_state: SearchState) -> None:
    body = client.get("/api/search", params={"q": "injection probe dosing note", "k": 1}).json()
    [hit] = body["hits"]
    assert hit["document_id"] == search_state.injection_id and hit["text"] == INJECTION_TEXT
    assert hit["heading_path"] == "<i>Heading</i> & notes"


def test_health(client: TestClient, search_state: SearchState) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["chunks"] == search_state.chunks
    assert health["embed_model"] == "all-MiniLM-L6-v2-static256" and health["vector_index"] == "lancedb"


def test_pdf_is_served_from_the_object_store(client: TestClient, search_state: SearchState) -> None:
    response = client.get(f"/pdf/{search_state.protocol_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'inline; filename="synthetic_protocol_ABC-123.pdf"'
    assert response.content.startswith(b"%PDF-")
    assert client.get("/pdf/never-ingested-0a1b2c3d").status_code == 404
    assert client.get("/pdf/..%2Fstatus.sqlite").status_code == 404
    assert client.get("/pdf/not-an-id").status_code == 404


def test_page_and_docs_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>ray-rag search</title>" in page.text
    assert "script-src 'unsafe-inline'" in page.headers["content-security-policy"]
    assert "innerHTML" not in page.text  # chunk text only ever goes through textContent / text nodes
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    assert client.get(docs.text.split('src="')[1].split('"')[0]).status_code == 200  # the bundled JS
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/health", "/pdf/{document_id}"} <= set(schema["paths"])
