"""``ray-rag search``, ``ray-rag status`` and ``ray-rag serve``: the commands a person runs many times a day.

Only typer and rich are imported at module level, so these commands start fast (``ray_rag_dagster.launcher``
runs them without loading the rest of the CLI, and answers a well-formed ``search`` without even typer).
``search`` asks a running ``ray-rag serve`` when there is one (:mod:`ray_rag_dagster.serve.client`) and
otherwise searches the index itself, loading only the index and the embedding model
(:func:`ray_rag_dagster.search.answer_search`).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ray_rag_dagster.backends.status_store import DocumentStatus

console = Console()
WIDE = 110  # from this terminal width on, status shows ids, versions, vectors and seconds too


def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="How many chunks.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Hybrid (full-text + vector) search over the indexed chunks (asks `ray-rag serve` when one runs)."""
    from ray_rag_dagster.search import answer_search

    answer_search(question, k, as_json)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface; there is no authentication).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8000,
) -> None:
    """The search API and page: loads the embedder and the index once, then answers each query in milliseconds."""
    from ray_rag_dagster.serve.app import run
    from ray_rag_dagster.settings import load_settings

    settings = load_settings()
    console.print(f"Loading the embedder and the index from {settings.home} …")

    def ready(url: str) -> None:
        console.print(f"Search page on {url}/ — API docs {url}/docs — `ray-rag search` uses it now. Ctrl-C stops.")

    run(settings, host, port, on_ready=ready)


def ago(seconds: float) -> str:
    """``42 s ago``, ``12 min ago``, ``5 h ago``, ``3 d ago`` (at most 10 characters up to 99 days)."""
    seconds = max(0.0, seconds)
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def duration(seconds: float) -> str:
    return ago(seconds).removesuffix(" ago").replace("just now", "a moment")


def lease_text(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return ""
    left = expires_at - now
    return f"expires in {duration(left)}" if left > 0 else f"expired {duration(-left)} ago"


def _timestamp(value: str) -> float | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _count(counts: dict[str, float], name: str) -> str:
    return str(int(counts[name])) if name in counts else ""


def status_json(rows: list[DocumentStatus], metrics: list[dict[str, Any]], now: float) -> dict[str, Any]:
    documents = []
    for row in rows:
        updated = _timestamp(row.updated_at)
        documents.append({
            "document_id": row.document_id,
            "source_key": row.source_key,
            "source_file": row.source_key.rsplit("/", 1)[-1],
            "processing_version": row.processing_version,
            "status": row.status,
            "current_stage": row.current_stage,
            "counts": row.counts,
            "error": row.error,
            "retry_count": row.retry_count,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "updated_seconds_ago": round(now - updated, 1) if updated is not None else None,
            "owner": row.owner,
            "lease_expires_at": (datetime.fromtimestamp(row.lease_expires_at, UTC).isoformat(timespec="seconds")
                                 if row.lease_expires_at is not None else None),
            "lease_seconds_left": round(row.lease_expires_at - now, 1) if row.lease_expires_at is not None else None,
        })
    return {"documents": documents, "daily_totals": metrics}


def print_status(target: Console, rows: list[DocumentStatus], metrics: list[dict[str, Any]], now: float,
                 title: str = "Documents") -> None:
    """Legible in 80 columns: one line per document; errors and leases as notes under the table. A terminal
    of :data:`WIDE` columns or more also shows document ids, versions, vectors and seconds."""
    wide = target.width >= WIDE
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), title_justify="left")
    table.add_column("document", overflow="fold", min_width=20, ratio=1)
    if wide:
        table.add_column("id", no_wrap=True)
        table.add_column("version", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    numbers = ("pages", "chunks", *(("vectors",) if wide else ()))
    for name in numbers:
        table.add_column(name, justify="right", no_wrap=True)
    if wide:
        table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("updated", justify="right", no_wrap=True)
    notes: list[str] = []
    styles = {"COMPLETED": "green", "FAILED": "red", "IN_PROGRESS": "yellow"}
    for row in rows:
        name = row.source_key.rsplit("/", 1)[-1]
        updated = _timestamp(row.updated_at)
        cells = [name]
        if wide:
            cells += [row.document_id, row.processing_version]
        style = styles.get(row.status, "")
        cells += [f"[{style}]{row.status}[/]" if style else row.status, row.current_stage or ""]
        cells += [_count(row.counts, column) for column in numbers]
        if wide:
            cells.append(f"{row.counts['seconds']:.1f}" if "seconds" in row.counts else "")
        cells.append(ago(now - updated) if updated is not None else row.updated_at)
        table.add_row(*cells)
        if row.error:
            notes.append(f"[red]{name}[/]: {row.error}")
        if row.status == "IN_PROGRESS" and row.lease_expires_at is not None:
            notes.append(f"[yellow]{name}[/]: held by {row.owner or '?'}, lease {lease_text(row.lease_expires_at, now)}")
    if not rows:
        target.print("[yellow]No documents yet: ray-rag ingest FILE.pdf[/]")
    else:
        target.print(table)
    if notes:
        bullets = Table.grid(padding=(0, 1, 0, 2))
        bullets.add_column(no_wrap=True)
        bullets.add_column(overflow="fold")
        for note in notes:
            bullets.add_row("•", note)
        target.print(bullets, highlight=False)

    daily = Table(title="Daily totals", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  title_justify="left")
    columns = (("day", "day"), ("done", "documents_completed"), ("failed", "documents_failed"), ("pages", "pages"),
               ("chunks", "chunks"), ("tokens", "tokens"), ("cost", "cost_usd"), ("seconds", "seconds"))
    for label, _ in columns:
        daily.add_column(label, justify="left" if label == "day" else "right", no_wrap=True)
    for day in metrics:
        daily.add_row(*(
            f"${day[key]:.4f}" if key == "cost_usd" else f"{day[key]:.1f}" if isinstance(day[key], float) else str(day[key])
            for _, key in columns
        ))
    if metrics:
        target.print(daily)


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """Every document's latest version: status, stage, counts, when it changed; errors and leases; daily totals."""
    from ray_rag_dagster.backends import build_status_store
    from ray_rag_dagster.settings import load_settings

    settings = load_settings()
    store = build_status_store(settings)
    rows, metrics, now = store.documents(), store.metrics(), time.time()
    if as_json:
        print(json.dumps(status_json(rows, metrics, now), indent=2, ensure_ascii=False))
        return
    where = settings.status_db if settings.status_store == "sqlite" else f"DynamoDB {settings.dynamodb_table_prefix}-*"
    print_status(console, rows, metrics, now, title=f"Documents ({where})")


app = typer.Typer(help="Search the index, see where every document is, serve the search page.",
                  no_args_is_help=True, add_completion=False)
app.command()(search)
app.command()(status)
app.command()(serve)


def main() -> None:
    app(prog_name="ray-rag")


if __name__ == "__main__":
    sys.exit(main())
