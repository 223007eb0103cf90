"""One search hit as JSON (what ``/api/search`` and ``ray-rag search --json`` return) and as a terminal table.

No heavy imports at module level: the search CLI's fast path renders a running server's answer with this
module and rich alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray_rag_dagster.passages import PASSAGE_CHARS, matched_passage

if TYPE_CHECKING:
    from rich.console import Console

    from ray_rag_dagster.backends.vector_index import SearchHit


def pages_label(start: int, end: int) -> str:
    return f"{start}" if start == end else f"{start}-{end}"


def hit_record(hit: SearchHit, question: str, rank: int, width: int = PASSAGE_CHARS) -> dict[str, Any]:
    """The hit's fields, its source file name, a link to its first page and the passage that matched."""
    return {
        "rank": rank,
        "id": hit.id,
        "document_id": hit.document_id,
        "source_key": hit.source_key,
        "source_file": hit.source_key.rsplit("/", 1)[-1],
        "page_start": int(hit.page_start),
        "page_end": int(hit.page_end),
        "heading_path": hit.heading_path,
        "score": float(hit.score),
        "text": hit.text,
        "passage": matched_passage(hit.text, question, width).to_json(),
        "pdf_url": f"/pdf/{hit.document_id}#page={int(hit.page_start)}",
        "metadata": hit.metadata,
    }


def print_hits(console: Console, question: str, hits: list[dict[str, Any]], *, source: str = "") -> None:
    """The hits as a table: rank, score, file, pages, heading, and the matched passage with its words in bold."""
    from rich.table import Table
    from rich.text import Text

    if not hits:
        console.print("[yellow]No results: ingest some documents first (ray-rag ingest FILE.pdf).[/]")
        return
    caption = f"answered by {source}" if source else None
    table = Table(title=f"Top {len(hits)} for: {question}", show_lines=True, caption=caption)
    table.add_column("#", justify="right")
    table.add_column("document", overflow="fold", max_width=32)
    table.add_column("passage", overflow="fold", ratio=1)
    for hit in hits:
        passage = hit["passage"]
        text = Text()
        if hit["heading_path"]:
            text.append(hit["heading_path"] + "\n", style="dim")
        shift = len(text)
        text.append(("… " if passage["start"] > 0 else "") + passage["text"]
                    + (" …" if passage["end"] < len(hit["text"]) else ""))
        shift += 2 if passage["start"] > 0 else 0
        for start, end in passage["highlights"]:
            text.stylize("bold yellow", start + shift, end + shift)
        pages = "page" if hit["page_start"] == hit["page_end"] else "pages"
        document = Text(hit["source_file"])
        document.append(f"\n{pages} {pages_label(hit['page_start'], hit['page_end'])}\nscore {hit['score']:.3f}", style="dim")
        table.add_row(str(hit["rank"]), document, text)
    console.print(table)
