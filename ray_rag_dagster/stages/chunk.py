"""Chunk stage: per-page Markdown → chunks of about ``target_chars``, cut only at element boundaries.

Guarantees:
- A paragraph, list or table that fits in the target is never split: chunks are cut between elements
  (the extractor's ``<!-- BOUNDARY -->`` markers), never inside one.
- An element longer than the target is split on its own: prose at sentence boundaries (words only for a
  single sentence longer than the target), a table by rows with its header repeated in every part.
- A chunk records its document, page range, heading path and a content hash.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

from ray_rag_dagster.backends import build_object_store
from ray_rag_dagster.ids import content_hash
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.page_markdown import BOUNDARY

HEADING, TABLE, LIST, PARAGRAPH = "heading", "table", "list", "paragraph"
# A section shorter than this is merged with the next one rather than becoming a chunk of its own.
MIN_SECTION_CHARS = 300
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[\"'(\[A-Z0-9•-])")
_LIST_ITEM = re.compile(r"^\s*([-*•]|\d+[.)])\s+")


@dataclass
class Element:
    kind: str
    text: str
    page_no: int
    level: int = 0  # heading level


@dataclass
class Chunk:
    chunk_index: int
    text: str
    page_start: int
    page_end: int
    heading_path: list[str]
    content_hash: str
    kinds: list[str]
    table_part: str | None = None  # "2/3" when a table too long for one chunk was split by rows


@dataclass
class _Draft:
    elements: list[Element] = field(default_factory=list)
    heading_path: list[str] = field(default_factory=list)
    table_part: str | None = None

    @property
    def size(self) -> int:
        return sum(len(element.text) + 2 for element in self.elements)

    def has_body(self) -> bool:
        return any(element.kind != HEADING for element in self.elements)


def classify(text: str) -> tuple[str, int]:
    """Element kind (and heading level) from its Markdown."""
    first = text.lstrip().split("\n", 1)[0]
    heading = re.match(r"^(#{1,6})\s", first)
    if heading:
        return HEADING, len(heading.group(1))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    # A table element may carry its caption on the lines before the table itself.
    if sum(line.lstrip().startswith("|") for line in lines) >= 2 and lines[-1].lstrip().startswith("|"):
        return TABLE, 0
    if lines and _LIST_ITEM.match(lines[0]):
        return LIST, 0
    return PARAGRAPH, 0


def parse_elements(pages: list[dict]) -> list[Element]:
    elements = []
    for page in pages:
        for part in page["markdown"].split(BOUNDARY):
            text = part.strip()
            if text:
                kind, level = classify(text)
                elements.append(Element(kind, text, int(page["page_no"]), level))
    return elements


def split_prose(text: str, limit: int) -> list[str]:
    """Pack sentences into pieces of at most ``limit`` characters; words only when a sentence is longer."""
    units: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= limit:
            units.append(sentence)
            continue
        words, piece = sentence.split(" "), ""
        for word in words:
            if piece and len(piece) + 1 + len(word) > limit:
                units.append(piece)
                piece = word
            else:
                piece = f"{piece} {word}" if piece else word
        units.append(piece)
    pieces, current = [], ""
    for unit in units:
        if current and len(current) + 1 + len(unit) > limit:
            pieces.append(current)
            current = unit
        else:
            current = f"{current} {unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def split_table(text: str, limit: int) -> list[str]:
    """Split a Markdown table by rows, repeating the header (and its separator row) in every part.

    A caption above the table stays with the first part only.
    """
    lines = text.strip().splitlines()
    start = next(index for index, line in enumerate(lines) if line.lstrip().startswith("|"))
    caption, lines = lines[:start], lines[start:]
    has_separator = len(lines) > 1 and re.fullmatch(r"\|?[\s:|-]+\|?", lines[1].strip()) is not None
    header = lines[:2] if has_separator else lines[:1]
    rows = lines[len(header) :]
    parts, current = [], [*caption, *header]
    for row in rows:
        if len(current) > len(header) and len("\n".join([*current, row])) > limit:
            parts.append("\n".join(current))
            current = list(header)
        current.append(row)
    parts.append("\n".join(current))
    return parts


def build_chunks(pages: list[dict], target_chars: int) -> list[Chunk]:
    """Group elements into chunks; see the module docstring for the guarantees."""
    drafts: list[_Draft] = []
    draft = _Draft()
    path: list[tuple[int, str]] = []

    def flush() -> None:
        nonlocal draft
        if draft.has_body():
            drafts.append(draft)
            draft = _Draft(heading_path=[title for _, title in path])
        # A draft holding only headings is kept: its headings lead into the next body.

    for element in parse_elements(pages):
        if element.kind == HEADING:
            if draft.has_body() and draft.size >= MIN_SECTION_CHARS:
                flush()
            title = element.text.lstrip("#").strip()
            path = [(level, text) for level, text in path if level < element.level] + [(element.level, title)]
            if not draft.has_body():  # the chunk's path is the one in force at its first body element
                draft.heading_path = [text for _, text in path]
            draft.elements.append(element)
            continue
        if draft.size + len(element.text) + 2 <= target_chars:
            if not draft.elements:
                draft.heading_path = [text for _, text in path]
            draft.elements.append(element)
            continue
        if len(element.text) <= target_chars:
            flush()
            draft.heading_path = [text for _, text in path]
            draft.elements.append(element)
            continue
        # The element alone is too long: cut it on its own boundaries into chunks of their own.
        flush()
        if element.kind == TABLE:
            pieces = split_table(element.text, target_chars)
        else:
            pieces = split_prose(element.text, target_chars)
        for number, piece in enumerate(pieces, start=1):
            part = Element(element.kind, piece, element.page_no, element.level)
            if number > 1 or not draft.elements:
                draft.heading_path = [text for _, text in path]
            draft.elements.append(part)
            if element.kind == TABLE and len(pieces) > 1:
                draft.table_part = f"{number}/{len(pieces)}"
            drafts.append(draft)
            draft = _Draft(heading_path=[text for _, text in path])
    if draft.elements:
        drafts.append(draft)

    chunks = []
    for index, done in enumerate(drafts):
        text = "\n\n".join(element.text for element in done.elements)
        pages_of = [element.page_no for element in done.elements]
        chunks.append(
            Chunk(
                chunk_index=index,
                text=text,
                page_start=min(pages_of),
                page_end=max(pages_of),
                heading_path=done.heading_path,
                content_hash=content_hash(text),
                kinds=sorted({element.kind for element in done.elements}),
                table_part=done.table_part,
            )
        )
    return chunks


def run_chunk(settings: Settings, document: DocumentRef) -> StageOutput:
    """Read the extracted pages, write ``chunks/<document_id>/<version>/chunks.jsonl``."""
    started = time.perf_counter()
    store = build_object_store(settings)
    extracted = store.get_json(keys.extracted_pages(document))
    if extracted["version"] != document.version:
        raise RuntimeError(
            f"{document.name}: extracted output is of version {extracted['version']}, "
            f"expected {document.version}; re-run extract"
        )
    chunks = build_chunks(extracted["pages"], settings.chunk_target_chars)
    rows = [{"document_id": document.document_id, "version": document.version, **asdict(chunk)} for chunk in chunks]
    key = keys.chunks(document)
    uri = store.put_jsonl(key, rows)
    sizes = [len(chunk.text) for chunk in chunks] or [0]
    return StageOutput(
        stage="chunk",
        document=document,
        key=key,
        uri=uri,
        counts={
            "chunks": len(chunks),
            "tables": sum(TABLE in chunk.kinds for chunk in chunks),
            "split_tables": len({chunk.chunk_index for chunk in chunks if chunk.table_part}),
            "mean_chars": round(sum(sizes) / len(sizes), 1),
            "max_chars": max(sizes),
        },
        seconds=time.perf_counter() - started,
    )
