"""Chunk stage: docling's ``DoclingDocument`` → chunks sized in the embedder's tokens, by docling-core's
``HybridChunker``.

Guarantees:
- Structure first: chunks follow the document's items (paragraphs, lists, tables) under their headings;
  neighbours under the same headings are merged while they fit (``merge_peers``).
- Sized in the embedder's own tokens (:class:`EmbedderTokenizer`): a chunk's text, headings included, is at
  most ``max_tokens`` (:func:`token_limit`: ``chunk_target_chars`` at the document's own characters per
  token, so chunks stay about as long as the ~1500 characters retrieval was tuned on, whichever embedder).
  A windowed model (MiniLM) reads a chunk longer than its window in consecutive windows, mean-pooled.
- An item longer than that is split on its own: prose by ``semchunk`` at sentence boundaries (words only
  for a sentence longer than the limit), a table between rows with its header repeated in every part.
  A table row is never cut: a row too long for the limit stays whole, alone with the header
  (:class:`RowKeepingHybridChunker`).
- A table of contents, list of tables or list of figures is navigation, not content: its entries ("7.3. Blinding
  ....... 32") name every section, so its chunks matched questions on every topic and answered none
  (:func:`set_aside_contents`).
- A chunk records its page range (from its items' provenance; the exact pages of a paragraph running over
  a page break), its heading path, the token count and a content hash.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from docling_core.transforms.chunker.doc_chunk import DocChunk
from docling_core.transforms.chunker.hybrid_chunker import HybridChunker
from docling_core.transforms.chunker.tokenizer.base import BaseTokenizer
from docling_core.transforms.serializer.base import BaseDocSerializer
from docling_core.types.doc import ContentLayer, DoclingDocument, ListItem, PictureItem, TableItem, TextItem
from pydantic import ConfigDict, PrivateAttr

from ray_rag_dagster.backends import build_embedder, build_object_store
from ray_rag_dagster.ids import content_hash
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef, StageOutput
from ray_rag_dagster.stages.page_markdown import ChunkMarkdownProvider, ChunkMarkdownSerializer

if TYPE_CHECKING:
    from ray_rag_dagster.backends.embedder import Embedder

TABLE, LIST, PICTURE, PARAGRAPH = "table", "list", "picture", "paragraph"
# Characters of a multi-page item's page piece looked up in a chunk to place the chunk on that page.
_PROBE_CHARS = 40
# A contents entry's dot leader and page number ("Blinding ........ 32"). In the three protocols' text items the
# leaders and numbers fill 37-89 % of a contents item and 0 % of any other: a quarter is the line.
_CONTENTS_ENTRY = re.compile(r"(?:\.\s?){5,}\s*\d+")
CONTENTS_SHARE = 0.25


@dataclass
class Chunk:
    chunk_index: int
    text: str  # what is embedded and indexed: the heading path's lines, then the chunk's Markdown
    page_start: int
    page_end: int
    heading_path: list[str]
    content_hash: str
    kinds: list[str]
    tokens: int  # in the embedder's tokens
    table_part: str | None = None  # "2/3" when a table too long for one chunk was split between rows


class EmbedderTokenizer(BaseTokenizer):
    """The embedder's own token count and a chunk limit in those tokens as docling-core's tokenizer: chunks
    are measured exactly as the embedder reads them (MiniLM's word pieces for the static, ONNX and local
    models, UTF-8 bytes for OpenAI's, whose tokenizer is not available offline)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    embedder: Any  # an Embedder (not a pydantic type)
    max_tokens: int
    # HybridChunker counts the same texts again and again (≈40 % repeats on a protocol; counting is ≈90 % of
    # its time): one document's counts are kept.
    _counts: dict[str, int] = PrivateAttr(default_factory=dict)

    @classmethod
    def of(cls, embedder: Embedder, max_tokens: int | None = None) -> EmbedderTokenizer:
        """Limited to ``max_tokens``; by default the embedder's window (``Embedder.max_tokens``)."""
        return cls(embedder=embedder, max_tokens=max_tokens or embedder.max_tokens)

    def count_tokens(self, text: str) -> int:
        count = self._counts.get(text)
        if count is None:
            count = self._counts[text] = self.embedder.count_tokens([text])[0]
        return count

    def get_max_tokens(self) -> int:
        return self.max_tokens

    def get_tokenizer(self) -> Any:
        """What ``semchunk.chunkerify`` takes: a token counter."""
        return self.count_tokens


class RowKeepingHybridChunker(HybridChunker):
    """``HybridChunker`` whose table splitting never cuts a row.

    docling-core 2.104 splits a row longer than the window by columns (or mid-line); here such a row stays
    whole in a part of its own, with the header, and the embedder pools its windows. Overrides the private
    ``_split_using_plain_text`` for tables only (docling-core is pinned).
    """

    def _split_using_plain_text(self, doc_chunk: DocChunk, doc_serializer: BaseDocSerializer) -> list[DocChunk]:
        items = doc_chunk.meta.doc_items
        if not (self.repeat_table_header and len(items) == 1 and isinstance(items[0], TableItem)):
            return super()._split_using_plain_text(doc_chunk, doc_serializer)
        lengths = self._doc_chunk_length(doc_chunk)
        if lengths.total_len <= self.max_tokens:
            return [doc_chunk]
        header, rows = doc_serializer.table_serializer.get_header_and_body_lines(table_text=doc_chunk.text)
        budget = self.max_tokens - lengths.other_len
        caption = doc_chunk.text[: doc_chunk.text.find(header[0])] if header else ""
        parts, current, current_rows = [], caption + "".join(header), 0
        for row in rows:
            if current_rows and self.tokenizer.count_tokens(current + row) > budget:
                parts.append(current)
                current, current_rows = "".join(header), 0
            current += row
            current_rows += 1
        parts.append(current)
        return [DocChunk(text=part.strip("\n"), meta=doc_chunk.meta) for part in parts]


def chunker_for(tokenizer: BaseTokenizer) -> RowKeepingHybridChunker:
    return RowKeepingHybridChunker(
        tokenizer=tokenizer,
        merge_peers=True,
        repeat_table_header=True,
        serializer_provider=ChunkMarkdownProvider(),
    )


def _kind(item: object) -> str:
    if isinstance(item, TableItem):
        return TABLE
    if isinstance(item, ListItem):
        return LIST
    if isinstance(item, PictureItem):
        return PICTURE
    return PARAGRAPH


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _item_pages(item: Any, chunk_text: str) -> set[int]:
    """The pages of ``item`` that this chunk holds text of.

    A paragraph docling merged across a page break has one provenance per page, whose charspans mark where
    each page's part starts. A chunk holding only part of it is placed on the pages whose part begins or ends
    in the chunk, and on the pages where the chunk's own first and last characters fall.
    """
    pages = {prov.page_no for prov in item.prov}
    if len(pages) < 2 or not isinstance(item, TextItem):
        return pages
    text, provs = item.text, item.prov
    starts = [0] + [min(max(prov.charspan[0], 0), len(text)) for prov in provs[1:]]
    ends = starts[1:] + [len(text)]
    pieces = [(prov.page_no, _squeeze(text[start:end])) for prov, start, end in zip(provs, starts, ends, strict=True)]
    pieces = [(page, piece) for page, piece in pieces if piece]
    held = _squeeze(chunk_text)
    found = {page for page, piece in pieces if piece[:_PROBE_CHARS] in held or piece[-_PROBE_CHARS:] in held}
    joined, spans, offset = " ".join(piece for _, piece in pieces), [], 0
    for page, piece in pieces:
        spans.append((page, offset, offset + len(piece)))
        offset += len(piece) + 1
    head, tail = joined.find(held[:_PROBE_CHARS]), joined.find(held[-_PROBE_CHARS:])
    for at in (head, tail + len(held[-_PROBE_CHARS:]) - 1 if tail >= 0 else -1):
        found |= {page for page, start, end in spans if at >= 0 and start <= at < end}
    return found or pages


def set_aside_contents(doc: DoclingDocument) -> None:
    """Move the document's contents entries (text items mostly dot leaders and page numbers) to the furniture
    layer, which the chunker skips like page headers. The extracted Markdown keeps them."""
    for item, _ in doc.iterate_items():
        if isinstance(item, TextItem) and item.text:
            leaders = sum(len(entry) for entry in _CONTENTS_ENTRY.findall(item.text))
            if leaders >= CONTENTS_SHARE * len(item.text):
                item.content_layer = ContentLayer.FURNITURE


def build_chunks(doc: DoclingDocument, tokenizer: BaseTokenizer) -> list[Chunk]:
    """Chunk ``doc`` with :func:`chunker_for`; see the module docstring for the guarantees."""
    set_aside_contents(doc)
    chunker = chunker_for(tokenizer)
    doc_chunks = list(chunker.chunk(doc))
    # table self_ref -> indices of the chunks holding a part of it
    table_chunks: dict[str, list[int]] = {}
    for index, doc_chunk in enumerate(doc_chunks):
        for item in doc_chunk.meta.doc_items:
            if isinstance(item, TableItem) and index not in table_chunks.setdefault(item.self_ref, []):
                table_chunks[item.self_ref].append(index)
    chunks = []
    for index, doc_chunk in enumerate(doc_chunks):
        text = chunker.contextualize(doc_chunk)
        pages = set().union(*(_item_pages(item, doc_chunk.text) for item in doc_chunk.meta.doc_items))
        split = [held for held in table_chunks.values() if len(held) > 1 and index in held]
        chunks.append(
            Chunk(
                chunk_index=index,
                text=text,
                page_start=min(pages),
                page_end=max(pages),
                heading_path=list(doc_chunk.meta.headings or []),
                content_hash=content_hash(text),
                kinds=sorted({_kind(item) for item in doc_chunk.meta.doc_items}),
                tokens=tokenizer.count_tokens(text),
                table_part=f"{split[0].index(index) + 1}/{len(split[0])}" if split else None,
            )
        )
    return chunks


def load_document(settings: Settings, document: DocumentRef) -> DoclingDocument:
    """The extract stage's ``DoclingDocument`` of this document version."""
    store = build_object_store(settings)
    extracted = store.get_json(keys.extracted_pages(document))
    if extracted["version"] != document.version:
        raise RuntimeError(
            f"{document.name}: extracted output is of version {extracted['version']}, "
            f"expected {document.version}; re-run extract"
        )
    return DoclingDocument.model_validate(store.get_json(keys.extracted_document(document)))


def token_limit(settings: Settings, doc: DoclingDocument, embedder: Embedder) -> int:
    """The chunk size limit in ``embedder``'s tokens: ``chunk_max_tokens`` when set, else ``chunk_target_chars``
    converted at this document's characters per token (its whole Markdown, counted by the embedder)."""
    if settings.chunk_max_tokens:
        return settings.chunk_max_tokens
    text = ChunkMarkdownSerializer(doc=doc).serialize().text
    tokens = embedder.count_tokens([text])[0] if text.strip() else 0
    if not tokens:
        return embedder.max_tokens
    return max(16, round(settings.chunk_target_chars * tokens / len(text)))


def run_chunk(settings: Settings, document: DocumentRef) -> StageOutput:
    """Read the extracted document, write ``chunks/<document_id>/<version>/chunks.jsonl``."""
    started = time.perf_counter()
    doc = load_document(settings, document)
    embedder = build_embedder(settings)
    tokenizer = EmbedderTokenizer.of(embedder, token_limit(settings, doc, embedder))
    chunks = build_chunks(doc, tokenizer)
    rows = [{"document_id": document.document_id, "version": document.version, **asdict(chunk)} for chunk in chunks]
    key = keys.chunks(document)
    uri = build_object_store(settings).put_jsonl(key, rows)
    tokens = [chunk.tokens for chunk in chunks] or [0]
    return StageOutput(
        stage="chunk",
        document=document,
        key=key,
        uri=uri,
        counts={
            "chunks": len(chunks),
            "tables": sum(TABLE in chunk.kinds for chunk in chunks),
            "split_tables": len({chunk.chunk_index for chunk in chunks if chunk.table_part}),
            "max_tokens": tokenizer.get_max_tokens(),
            "mean_tokens": round(sum(tokens) / len(tokens), 1),
            "max_chunk_tokens": max(tokens),
            # chunks over the limit: a table row kept whole
            "over_max_tokens": sum(token > tokenizer.get_max_tokens() for token in tokens),
            "mean_chars": round(sum(len(chunk.text) for chunk in chunks) / max(len(chunks), 1), 1),
        },
        details={"tokenizer": embedder.name},
        seconds=time.perf_counter() - started,
    )
