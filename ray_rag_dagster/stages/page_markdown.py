"""Markdown from a converted ``DoclingDocument`` through docling-core's serializers, one page at a time.

One serializer (:class:`ChunkMarkdownSerializer`) renders both the readable per-page Markdown of the extract
stage and the text of every chunk (the chunker's serializer provider), so what a reader sees is what gets
embedded: headings as ``#`` lines, lists, captions, tables as compact GitHub Markdown tables (one line per
row, which lets the chunker split a long table between rows), no image placeholders and no escaping.

:func:`normalize_document` fixes, on the document itself (so the Markdown and the chunks agree), what the
offline layout model gets wrong and docling cannot know:

- a line starting with a bullet glyph is a list item, never a title or section header (the layout model
  boxes some bulleted criteria as titles; as a heading the line would be cut off its own sentence and head
  unrelated text);
- a section header whose text (digits aside) is on three or more pages is a running header: text;
- a page header whose text occurs once is content, not a running header (a lone title near the top of an
  appendix cover page): a section header when it is title-like, text otherwise;
- a section number the layout model boxed apart from its title ("4.6.1", then "Medical History") is joined to
  it: one section header "4.6.1 Medical History" at the number's depth (the Roche protocol had 49 such numbers:
  each left a chunk holding a bare number and a heading path without the section's number).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from docling_core.transforms.chunker.hierarchical_chunker import ChunkingDocSerializer, ChunkingSerializerProvider
from docling_core.transforms.serializer.base import (
    BaseDocSerializer,
    BaseMetaSerializer,
    BaseTableSerializer,
    SerializationResult,
)
from docling_core.transforms.serializer.common import create_ser_result
from docling_core.transforms.serializer.markdown import MarkdownMetaSerializer, MarkdownParams, MarkdownTableSerializer
from docling_core.types.doc.base import ImageRefMode

if TYPE_CHECKING:
    from docling_core.types.doc import DoclingDocument, NodeItem, TextItem

# short, and no sentence-final punctuation: a title rather than a line of text
_TITLE_LIKE = re.compile(r"^(?=.*\w).{1,80}(?<![.,;:!?])$")
_BULLET = "•◦▪▫●○■□‣⁃∙·➢➤►▶✓✔-–—*o\uf0b7\uf0a7\uf0d8\uf076"
BULLET_START = re.compile(rf"^\s*[{re.escape(_BULLET)}]\s+")
# a section number alone: "2.", "4.6.1", "3.2.10" (not "3" or "128528": values in a field list)
_SECTION_NUMBER = re.compile(r"^(?:\d+\.)+\d*$|^\d+(?:\.\d+)+$")
# A section header on this many pages or more is a running header.
RUNNING_HEADER_PAGES = 3


class DescriptionMetaSerializer(MarkdownMetaSerializer):
    """A picture's description (the vision model's words, not the PDF's) as a ``> Description: ...`` line under
    its caption, so a reader tells the two apart; any other metadata as docling-core renders it."""

    def serialize(self, *, item: NodeItem, doc: DoclingDocument, **kwargs: Any) -> SerializationResult:
        from docling_core.types.doc import DocItem

        description = getattr(item.meta, "description", None) if item.meta else None
        words = " ".join(description.text.split()) if description else ""
        blocked = set(kwargs.pop("blocked_meta_names", None) or ()) | {"description"}
        rest = super().serialize(item=item, doc=doc, blocked_meta_names=blocked, **kwargs).text
        text = "\n\n".join(part for part in (f"> Description: {words}" if words else "", rest) if part)
        return create_ser_result(text=text, span_source=item if isinstance(item, DocItem) else [])


class ChunkMarkdownSerializer(ChunkingDocSerializer):
    """docling's chunking serializer with Markdown tables instead of its "row, column = value" triplets.

    A Markdown table keeps one row per line under a header, which is what lets the chunker repeat the header
    and cut between rows; compact, because tabulate's padding only costs characters. Picture descriptions are
    marked (:class:`DescriptionMetaSerializer`).
    """

    table_serializer: BaseTableSerializer = MarkdownTableSerializer()
    meta_serializer: BaseMetaSerializer = DescriptionMetaSerializer()
    params: MarkdownParams = MarkdownParams(
        image_mode=ImageRefMode.PLACEHOLDER,
        image_placeholder="",
        escape_underscores=False,
        escape_html=False,
        compact_tables=True,
    )


class ChunkMarkdownProvider(ChunkingSerializerProvider):
    def get_serializer(self, doc: DoclingDocument) -> BaseDocSerializer:
        return ChunkMarkdownSerializer(doc=doc)


def render_pages(doc: DoclingDocument, pages: range) -> dict[int, str]:
    """Markdown of each page; an item spanning a page break is rendered on the page where it starts."""
    serializer = ChunkMarkdownSerializer(doc=doc)
    return {page_no: serializer.serialize(pages={page_no}).text.strip() for page_no in pages}


def page_counts(doc: DoclingDocument) -> dict[int, tuple[int, int, int]]:
    """(elements, tables, pictures) per page: the body's content items, by the page where each starts."""
    from docling_core.types.doc import DocItem, PictureItem, TableItem

    counts: dict[int, tuple[int, int, int]] = {}
    for item, _level in doc.iterate_items():
        if isinstance(item, DocItem) and item.prov:
            elements, tables, pictures = counts.get(item.prov[0].page_no, (0, 0, 0))
            counts[item.prov[0].page_no] = (
                elements + 1,
                tables + isinstance(item, TableItem),
                pictures + isinstance(item, PictureItem),
            )
    return counts


def _header_key(text: str) -> str:
    return re.sub(r"[\d\s]+", " ", text).strip().lower()


def normalize_document(doc: DoclingDocument, page_count: int) -> DoclingDocument:
    """``doc`` with the module docstring's fixes: items relabelled in place (same references, provenance and
    place in the tree) or moved from the furniture into the body. Returns the document re-validated, which
    gathers list items that are not in a list into list groups.

    ``page_count`` is the whole PDF's: a page-range shard decides on page headers as the whole would.
    """
    from docling_core.types.doc import (
        ContentLayer,
        DocItemLabel,
        DoclingDocument,
        ListItem,
        SectionHeaderItem,
        TextItem,
        TitleItem,
    )

    running = _running_section_headers(doc)
    unique = _unique_page_headers(doc, page_count)
    for index, item in enumerate(doc.texts):
        promoted = item.self_ref in unique
        if promoted:
            item.content_layer = ContentLayer.BODY
        elif item.content_layer != ContentLayer.BODY:
            continue
        bullet = BULLET_START.match(item.text)
        if bullet is not None and (
            promoted or isinstance(item, ListItem | TitleItem | SectionHeaderItem)
            or item.label in (DocItemLabel.TEXT, DocItemLabel.PARAGRAPH)
        ):
            doc.texts[index] = _as_list_item(item, bullet)
        elif promoted and _TITLE_LIKE.match(item.text):
            doc.texts[index] = _relabelled(item, SectionHeaderItem, DocItemLabel.SECTION_HEADER, level=1)
        elif promoted or (isinstance(item, SectionHeaderItem) and _header_key(item.text) in running):
            doc.texts[index] = _relabelled(item, TextItem, DocItemLabel.TEXT)
    _join_section_numbers(doc)
    return DoclingDocument.model_validate(doc.export_to_dict())


def _join_section_numbers(doc: DoclingDocument) -> None:
    """A body text that is only a section number, followed on its page by a title-like text: one section header
    (the number's depth is its level); the number's own item is deleted."""
    from docling_core.types.doc import DocItemLabel, ListItem, SectionHeaderItem, TextItem

    body = [item for item, _level in doc.iterate_items() if isinstance(item, TextItem) and item.prov]
    numbers = []
    for number, title in zip(body, body[1:]):
        text = number.text.strip()
        if (not _SECTION_NUMBER.match(text) or isinstance(title, ListItem) or _SECTION_NUMBER.match(title.text.strip())
                or not _TITLE_LIKE.match(title.text) or BULLET_START.match(title.text)
                or number.prov[0].page_no != title.prov[0].page_no):
            continue
        joined = f"{text} {title.text.strip()}"
        index = int(title.self_ref.rsplit("/", 1)[1])
        doc.texts[index] = _relabelled(title, SectionHeaderItem, DocItemLabel.SECTION_HEADER,
                                       level=len([part for part in text.split(".") if part]), text=joined, orig=joined)
        numbers.append(number)
    if numbers:
        doc.delete_items(node_items=numbers)


def _relabelled(item: TextItem, cls: type[TextItem], label: Any, **fields: Any) -> TextItem:
    """``item`` as a ``cls`` (the item classes fix their labels), same reference, parent, children and provenance."""
    from docling_core.types.doc import TextItem

    common = {name: getattr(item, name) for name in TextItem.model_fields if name != "label"}
    return cls(**{**common, **fields, "label": label})


def _as_list_item(item: TextItem, bullet: re.Match[str]) -> TextItem:
    """A list item of ``item``'s text without its bullet glyph (the glyph becomes the item's marker); the
    provenance's character spans move with the text."""
    from docling_core.types.doc import DocItemLabel, ListItem

    cut = bullet.end()
    prov = [p.model_copy(update={"charspan": (max(p.charspan[0] - cut, 0), max(p.charspan[1] - cut, 0))})
            for p in item.prov]
    marker = getattr(item, "marker", "") or bullet.group().strip()
    return _relabelled(item, ListItem, DocItemLabel.LIST_ITEM, text=item.text[cut:], orig=item.orig, prov=prov,
                       enumerated=False, marker=marker)


def _running_section_headers(doc: DoclingDocument) -> set[str]:
    """Section-header texts (digits aside) on ``RUNNING_HEADER_PAGES`` pages or more."""
    from docling_core.types.doc import SectionHeaderItem

    pages: dict[str, set[int]] = {}
    for item, _level in doc.iterate_items():
        if isinstance(item, SectionHeaderItem) and item.prov:
            pages.setdefault(_header_key(item.text), set()).add(item.prov[0].page_no)
    return {key for key, on in pages.items() if len(on) >= RUNNING_HEADER_PAGES}


def _unique_page_headers(doc: DoclingDocument, page_count: int) -> set[str]:
    """References of the page-header items whose text (digits aside) occurs once: content, not running headers.

    Only decidable with a few pages to compare: with fewer than three pages, none.
    """
    from docling_core.types.doc import ContentLayer, DocItemLabel, TextItem

    if page_count < 3:
        return set()
    seen: dict[str, list[str]] = {}
    for item, _level in doc.iterate_items(included_content_layers={ContentLayer.FURNITURE}):
        if isinstance(item, TextItem) and item.label == DocItemLabel.PAGE_HEADER:
            key = _header_key(item.text)
            if len(key) >= 3:
                seen.setdefault(key, []).append(item.self_ref)
    return {refs[0] for refs in seen.values() if len(refs) == 1}
