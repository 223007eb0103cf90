"""The document normalizations behind the Markdown and the chunks, on DoclingDocuments built here."""

from __future__ import annotations

from docling_core.types.doc import (
    BoundingBox,
    ContentLayer,
    DocItemLabel,
    DoclingDocument,
    ListItem,
    ProvenanceItem,
    SectionHeaderItem,
    Size,
    TitleItem,
)

from ray_rag_dagster.stages.page_markdown import normalize_document, render_pages


def prov(page: int, text: str = "") -> ProvenanceItem:
    return ProvenanceItem(page_no=page, bbox=BoundingBox(l=0, t=0, r=1, b=1), charspan=(0, len(text)))


def new_doc(pages: int) -> DoclingDocument:
    doc = DoclingDocument(name="protocol")
    for page in range(1, pages + 1):
        doc.add_page(page_no=page, size=Size(width=600, height=800))
    return doc


def by_text(doc: DoclingDocument) -> dict[str, object]:
    return {item.text: item for item in doc.texts}


def test_a_bulleted_line_is_a_list_item_never_a_heading() -> None:
    doc = new_doc(1)
    criterion = "· CNS imaging (CT scan or MRI of brain) compatible with AD"
    doc.add_title(text=criterion, prov=prov(1, criterion))
    doc.add_heading(text="• Prior exposure to xanomeline", level=1, prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="- within past 1 year", prov=prov(1))
    doc.add_heading(text="3.4 Exclusion criteria", level=1, prov=prov(1))
    doc = normalize_document(doc, page_count=1)
    items = by_text(doc)
    item = items["CNS imaging (CT scan or MRI of brain) compatible with AD"]
    assert isinstance(item, ListItem) and item.marker == "·" and item.prov[0].charspan == (0, len(criterion) - 2)
    assert isinstance(items["Prior exposure to xanomeline"], ListItem)
    assert isinstance(items["within past 1 year"], ListItem)
    assert isinstance(items["3.4 Exclusion criteria"], SectionHeaderItem)
    assert not any(isinstance(item, TitleItem) for item in doc.texts)
    lines = render_pages(doc, range(1, 2))[1].splitlines()
    assert "- CNS imaging (CT scan or MRI of brain) compatible with AD" in lines
    assert not [line for line in lines if line.startswith("#") and "CNS imaging" in line]
    assert "## 3.4 Exclusion criteria" in lines


def test_a_section_header_on_three_pages_is_a_running_header() -> None:
    doc = new_doc(4)
    for page in range(1, 4):
        doc.add_heading(text=f"Protocol H2Q-MC-LZZT {page}", level=1, prov=prov(page))
        doc.add_heading(text=f"Section {chr(64 + page)}", level=1, prov=prov(page))
    doc.add_heading(text="Appendix", level=1, prov=prov(4))
    doc.add_heading(text="Appendix", level=1, prov=prov(4))  # twice on one page: still one page
    items = by_text(normalize_document(doc, page_count=4))
    assert all(items[f"Protocol H2Q-MC-LZZT {page}"].label == DocItemLabel.TEXT for page in range(1, 4))
    assert all(isinstance(items[f"Section {letter}"], SectionHeaderItem) for letter in "ABC")
    assert isinstance(items["Appendix"], SectionHeaderItem)


def test_a_page_header_that_occurs_once_is_content() -> None:
    doc = new_doc(4)
    for page in range(1, 5):
        doc.add_text(label=DocItemLabel.PAGE_HEADER, text=f"Clinical Study Protocol {page}", prov=prov(page),
                     content_layer=ContentLayer.FURNITURE)
    doc.add_text(label=DocItemLabel.PAGE_HEADER, text="Appendix 1 Schedule of Events", prov=prov(3),
                 content_layer=ContentLayer.FURNITURE)
    doc.add_text(label=DocItemLabel.PAGE_HEADER, text="Confidential: do not copy this page.", prov=prov(4),
                 content_layer=ContentLayer.FURNITURE)
    normalized = normalize_document(doc.model_copy(deep=True), page_count=4)
    items = by_text(normalized)
    title = items["Appendix 1 Schedule of Events"]
    assert isinstance(title, SectionHeaderItem) and title.content_layer == ContentLayer.BODY
    sentence = items["Confidential: do not copy this page."]
    assert sentence.label == DocItemLabel.TEXT and sentence.content_layer == ContentLayer.BODY
    running = [items[f"Clinical Study Protocol {page}"] for page in range(1, 5)]
    assert all(item.label == DocItemLabel.PAGE_HEADER and item.content_layer == ContentLayer.FURNITURE
               for item in running)
    assert "## Appendix 1 Schedule of Events" in render_pages(normalized, range(3, 4))[3].splitlines()
    # too few pages to tell a running header from a lone title: nothing moves
    few = by_text(normalize_document(doc.model_copy(deep=True), page_count=2))
    assert few["Appendix 1 Schedule of Events"].content_layer == ContentLayer.FURNITURE


def test_a_section_number_boxed_apart_is_joined_to_its_title() -> None:
    doc = new_doc(2)
    doc.add_text(label=DocItemLabel.TEXT, text="VERSION:", prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="3", prov=prov(1))  # a value, not a section number
    doc.add_text(label=DocItemLabel.TEXT, text="4.6.1", prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="Medical History", prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="Each patient's history is recorded at screening.", prov=prov(1))
    doc.add_heading(text="4.6.2", level=1, prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="The visit takes place at the site.", prov=prov(1))  # not a title
    doc.add_text(label=DocItemLabel.TEXT, text="5.", prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="ASSESSMENT OF SAFETY", prov=prov(2))  # next page: left alone
    doc = normalize_document(doc, page_count=2)
    items = by_text(doc)
    header = items["4.6.1 Medical History"]
    assert isinstance(header, SectionHeaderItem) and header.level == 3
    assert "4.6.1" not in items and "Medical History" not in items
    assert not isinstance(items["3"], SectionHeaderItem) and "VERSION:" in items
    assert "4.6.2" in items and "The visit takes place at the site." in items
    assert "5." in items and not isinstance(items["ASSESSMENT OF SAFETY"], SectionHeaderItem)
    lines = render_pages(doc, range(1, 2))[1].splitlines()
    assert [line for line in lines if line.startswith("#")] == ["#### 4.6.1 Medical History", "## 4.6.2"]
