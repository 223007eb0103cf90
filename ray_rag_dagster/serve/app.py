"""``ray-rag serve``: the search API and page, with the embedder and the index loaded once at start-up.

- ``GET /`` — the search page (``static/index.html``: one file, no build step)
- ``GET /api/search?q=...&k=5`` — the top chunks: document, source file, pages, heading path, score, text,
  and the matched passage with highlight offsets
- ``GET /api/health`` — ``{"status": "ok", ...}``; what ``ray-rag search`` checks before it uses the server
- ``GET /pdf/{document_id}`` — the source PDF from the object store (link to ``/pdf/<id>#page=N``)
- ``GET /docs`` — the OpenAPI docs (Swagger UI served from the ``fastapi-offline`` wheel: no CDN)

A request does only the query's work: embed the question, run the hybrid search, cut the passages.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from ray_rag_dagster.hits import hit_record
from ray_rag_dagster.ids import document_id_for, safe_document_id
from ray_rag_dagster.settings import Settings

STATIC = Path(__file__).parent / "static"
MAX_K = 50
# The page's script and style are inline in one file; nothing else may run, load or be framed.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class PassageOut(BaseModel):
    text: str = Field(description="The part of the chunk that matched: chunk text[start:end].")
    start: int = Field(description="Offset of the passage in the chunk text.")
    end: int
    highlights: list[tuple[int, int]] = Field(description="(start, end) offsets into the passage of the question's words.")


class HitOut(BaseModel):
    rank: int
    id: str
    document_id: str
    source_key: str = Field(description="Key of the source PDF in the object store, e.g. input/protocol.pdf.")
    source_file: str
    page_start: int = Field(description="First page of the chunk (1-based).")
    page_end: int
    heading_path: str
    score: float = Field(description="Fused score: full text and vector legs, each min-max normalised.")
    text: str = Field(description="The whole chunk (PII redacted).")
    passage: PassageOut
    pdf_url: str = Field(description="The source PDF at the chunk's first page, relative to this server.")
    metadata: dict[str, Any]


class SearchOut(BaseModel):
    query: str
    k: int
    took_ms: float
    hits: list[HitOut]


class HealthOut(BaseModel):
    status: str
    chunks: int
    embed_model: str
    vector_index: str
    pid: int
    uptime_seconds: float
    searches: int = Field(description="Searches answered since start-up.")


class SearchService:
    """The embedder, the index and the object store, built once; thread-safe for concurrent requests."""

    def __init__(self, settings: Settings) -> None:
        from ray_rag_dagster.backends import build_embedder, build_object_store, build_vector_index
        from ray_rag_dagster.search import QUERY_THREADS

        self.settings = settings
        self.started = time.time()
        self.index = build_vector_index(settings)
        self.embedder = build_embedder(settings, query_threads=QUERY_THREADS)
        self.store = build_object_store(settings)
        # The first run of the model allocates its buffers; the first query opens the full-text index.
        self.index.search("warm up", self.embedder.embed_query("warm up"), 1)
        self._sources: dict[str, str] = {}
        self._lock = threading.Lock()
        self.searches = 0

    def search(self, question: str, k: int) -> list[dict[str, Any]]:
        vector = self.embedder.embed_query(self.index.embedding_text(question))
        hits = self.index.search(question, vector, k)
        with self._lock:
            self.searches += 1
        return [hit_record(hit, question, rank) for rank, hit in enumerate(hits, start=1)]

    def source_key(self, document_id: str) -> str | None:
        """The inbox key whose document id this is (ids are derived from keys); rescans the inbox on a miss."""
        with self._lock:
            if document_id not in self._sources:
                self._sources = {document_id_for(info.key): info.key for info in self.store.list("input/")}
            return self._sources.get(document_id)


def create_app(settings: Settings, service: SearchService | None = None) -> FastAPI:
    service = service or SearchService(settings)
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    app = FastAPIOffline(
        title="ray-rag search",
        description="Hybrid (full-text + vector) search over the chunks of the ingested PDFs.",
        version="1",
        redoc_url=None,
    )
    app.state.service = service

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})

    @app.get("/api/search", response_model=SearchOut, summary="Search the indexed chunks")
    def search(
        q: Annotated[str, Query(min_length=1, max_length=2000, description="The question.")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many chunks.")] = 5,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        hits = service.search(q, k)
        return {"query": q, "k": k, "took_ms": round((time.perf_counter() - started) * 1000, 2), "hits": hits}

    @app.get("/api/health", response_model=HealthOut, summary="Is the server up, and what does it serve")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "chunks": service.index.count(),
            "embed_model": service.embedder.name,
            "vector_index": settings.vector_index,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - service.started, 1),
            "searches": service.searches,
        }

    @app.get(
        "/pdf/{document_id}",
        summary="The source PDF of a document",
        response_class=Response,
        responses={200: {"content": {"application/pdf": {}}}, 404: {"description": "No such document"}},
    )
    def pdf(document_id: str) -> Response:
        try:
            safe_document_id(document_id)
        except ValueError:
            raise HTTPException(404, f"not a document id: {document_id}") from None
        key = service.source_key(document_id)
        if key is None:
            raise HTTPException(404, f"{document_id}: its source PDF is not in the object store")
        try:
            data = service.store.get_bytes(key)
        except FileNotFoundError as error:  # deleted since the inbox was listed
            raise HTTPException(404, f"{document_id}: {error}") from None
        name = key.rsplit("/", 1)[-1].replace('"', "")
        return Response(data, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})

    return app


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard bind is reached on the loopback address."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8000, on_ready: Any = None) -> None:
    """Serve until interrupted. Once the socket listens, ``$RAY_RAG_HOME/serve.json`` tells ``ray-rag search``
    where the server is; it is removed on exit."""
    import uvicorn

    from ray_rag_dagster.serve.client import remove_server_file, write_server_file

    app = create_app(settings)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # port 0 binds a free port: read the one the socket got
                bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
                url = client_url(host, bound)
                write_server_file(settings.home, url)
                if on_ready is not None:
                    on_ready(url)

    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the handler it found:
    # this one ends the process normally, so the server file is removed.
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        remove_server_file(settings.home)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
