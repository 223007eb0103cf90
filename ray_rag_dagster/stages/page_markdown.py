"""Per-page Markdown from a converted ``DoclingDocument``, elements separated by ``BOUNDARY`` lines.

Headings, paragraphs, lists, tables and picture captions (with a vision model's description, if
any) each become one element, so the chunker can split on element edges. Running headers and
footers are dropped; a paragraph docling merged across a page break is split back at the break.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docling_core.types.doc import DoclingDocument, TableItem, TextItem

BOUNDARY = "<!-- BOUNDARY -->"
ELEMENT_SEPARATOR = f"\n\n{BOUNDARY}\n\n"

# short, and no sentence-final punctuation: a title rather than a line of text
_TITLE_LIKE = re.compile(r"^(?=.*\w).{1,80}(?<![.,;:!?])$")
_BULLET = "•◦▪▫●○■□‣⁃∙·➢➤►▶✓✔-–—*o\uf0b7\uf0a7\uf0d8\uf076"
BULLET_START = re.compile(rf"^\s*[{re.escape(_BULLET)}]\s+")
# unambiguous bullet glyphs (not hyphens or letters); each one starts a list item
_BULLET_GLYPH = re.compile(r"(?:^|\s)[•◦▪●○■‣⁃➢➤►▶✓✔\uf0b7\uf0a7\uf0d8\uf076](?:\s|$)")


def render_pages(doc: DoclingDocument, page_count: int) -> dict[int, tuple[list[str], int, int]]:
    """Markdown elements, table count and picture count per page number."""
    from docling_core.types.doc import (
        CodeItem,
        ContentLayer,
        DocItemLabel,
        ListItem,
        PictureItem,
        SectionHeaderItem,
        TableItem,
        TextItem,
        TitleItem,
    )

    out: dict[int, tuple[list[str], int, int]] = {}
    caption_refs: set[str] = set()
    list_parent: str | None = None  # parent of the list element being built, if any

    def add(page_no: int, text: str, table: int = 0, picture: int = 0) -> None:
        elements, tables, pictures = out.get(page_no, ([], 0, 0))
        if text:
            elements.append(text)
        out[page_no] = (elements, tables + table, pictures + picture)

    def captions(item: PictureItem | TableItem) -> str:
        lines = []
        for ref in item.captions:
            caption_refs.add(ref.cref)
            text = ref.resolve(doc).text.strip()  # type: ignore[attr-defined]
            if text:
                lines.append(f"*{text}*")
        return "\n\n".join(lines)

    unique_headers = _unique_page_headers(doc, page_count)
    running_headers = _repeated_section_headers(doc)
    for item, _level in doc.iterate_items(included_content_layers={ContentLayer.BODY, ContentLayer.FURNITURE}):
        if not getattr(item, "prov", None):
            continue
        if item.content_layer == ContentLayer.FURNITURE and item.self_ref not in unique_headers:
            continue  # running headers / footers / page numbers
        page_no = item.prov[0].page_no
        if not isinstance(item, ListItem):
            list_parent = None

        if isinstance(item, TableItem):
            table = _markdown_table(item)
            parts = [p for p in (captions(item), table) if p]
            add(page_no, "\n\n".join(parts), table=1 if table else 0)
        elif isinstance(item, PictureItem):
            description = item.meta.description.text.strip() if item.meta and item.meta.description else ""
            described = "> Description: " + " ".join(description.split()) if description else ""
            add(page_no, "\n\n".join(p for p in (captions(item), described) if p), picture=1)
        elif isinstance(item, TextItem) and item.self_ref in caption_refs:
            continue
        elif isinstance(item, TextItem):
            # a paragraph docling merged across a page break is split back at the break
            for piece_page, text in _page_pieces(item):
                # "· CNS imaging (CT scan or MRI of brain) compatible with AD": a list line, whatever the layout
                # model called it; as a heading it would cut the item off its own text
                bulleted = BULLET_START.match(text) is not None
                if isinstance(item, TitleItem) and not bulleted:
                    text = f"# {text}"
                elif item.self_ref in unique_headers and _TITLE_LIKE.match(text) and not bulleted:
                    text = f"## {text}"  # a lone title CDLA took for a page header
                elif isinstance(item, SectionHeaderItem) and _header_key(text) not in running_headers and not bulleted:
                    text = f"{'#' * min(max(item.level, 1) + 1, 6)} {text}"
                elif isinstance(item, CodeItem):
                    text = f"```\n{text}\n```"
                elif isinstance(item, ListItem):
                    text = BULLET_START.sub("", text)
                    parent = item.parent.cref if item.parent else None
                    elements = out.get(piece_page, ([], 0, 0))[0]
                    if list_parent is not None and parent == list_parent and elements:
                        elements[-1] += f"\n- {text}"
                        continue
                    list_parent = parent
                    text = f"- {text}"
                elif bulleted:
                    text = f"- {BULLET_START.sub('', text)}"
                elif item.label == DocItemLabel.CAPTION:
                    text = f"*{text}*"
                elif _BULLET_GLYPH.search(text):
                    text = _bullets_to_list(text)
                add(piece_page, text)
    return out


def _unique_page_headers(doc: DoclingDocument, page_count: int) -> set[str]:
    """Page-header items that are really content: their text (digits aside) occurs once.

    CDLA labels a lone title near the top of an appendix cover page as a page header; a
    running header repeats on many pages. Only decidable with a few pages to compare: the
    whole document's ``page_count`` decides, so a page-range shard renders as the whole would.
    """
    from docling_core.types.doc import ContentLayer, DocItemLabel, TextItem

    if page_count < 3:
        return set()
    seen: dict[str, list[str]] = {}
    for item, _level in doc.iterate_items(included_content_layers={ContentLayer.FURNITURE}):
        if isinstance(item, TextItem) and item.label == DocItemLabel.PAGE_HEADER:
            key = re.sub(r"[\d\s]+", " ", item.text).strip().lower()
            if len(key) >= 3:
                seen.setdefault(key, []).append(item.self_ref)
    return {refs[0] for refs in seen.values() if len(refs) == 1}


def _header_key(text: str) -> str:
    return re.sub(r"[\d\s]+", " ", text).strip().lower()


def _repeated_section_headers(doc: DoclingDocument) -> set[str]:
    """Section-header texts (digits aside) on three or more pages: a running header, rendered as text."""
    from docling_core.types.doc import SectionHeaderItem

    pages: dict[str, set[int]] = {}
    for item, _level in doc.iterate_items():
        if isinstance(item, SectionHeaderItem) and item.prov:
            pages.setdefault(_header_key(item.text), set()).add(item.prov[0].page_no)
    return {key for key, on in pages.items() if len(on) >= 3}


def _page_pieces(item: TextItem) -> list[tuple[int, str]]:
    """(page, text) per provenance; docling's charspans mark where each page's part starts."""
    text = item.text
    provs = item.prov
    starts = [0] + [min(max(p.charspan[0], 0), len(text)) for p in provs[1:]]
    ends = starts[1:] + [len(text)]
    pieces = []
    for prov, start, end in zip(provs, starts, ends, strict=True):
        piece = text[start:end].strip()
        if piece:
            pieces.append((prov.page_no, piece))
    return pieces


def _bullets_to_list(text: str) -> str:
    """Bullet glyphs in a text block as Markdown list lines (CDLA has no list-item class).

    Text before the first bullet stays a lead-in line; line breaks are gone by now, so text
    after the last item stays in that item.
    """
    lead, *items = _BULLET_GLYPH.split(text)
    lines = [lead.strip()] if lead.strip() else []
    lines += [f"- {item.strip()}" for item in items if item.strip()]
    return "\n".join(lines)


def _markdown_table(item: TableItem) -> str:
    """GitHub Markdown table; the first grid row is the header row."""
    grid = item.data.grid
    if not grid or not grid[0]:
        return ""

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    rows = [[cell(c.text) for c in row] for row in grid]
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] * width) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)
