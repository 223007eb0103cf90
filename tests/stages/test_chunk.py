"""The chunk stage on DoclingDocuments built here, sized by the real embedder's tokenizer (MiniLM on ONNX)."""

from __future__ import annotations

import pytest
from docling_core.types.doc import (
    BoundingBox,
    DocItemLabel,
    DoclingDocument,
    ProvenanceItem,
    Size,
    TableCell,
    TableData,
)

from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages.chunk import TABLE, EmbedderTokenizer, build_chunks, token_limit
from ray_rag_dagster.stages.extract import concatenate_documents
from tests.conftest import MODEL_CACHE


def prov(page: int, charspan: tuple[int, int] = (0, 0)) -> ProvenanceItem:
    return ProvenanceItem(page_no=page, bbox=BoundingBox(l=0, t=0, r=1, b=1), charspan=charspan)


def new_doc(pages: range) -> DoclingDocument:
    doc = DoclingDocument(name="protocol")
    for page in pages:
        doc.add_page(page_no=page, size=Size(width=600, height=800))
    return doc


def add_table(doc: DoclingDocument, page: int, rows: list[list[str]]) -> None:
    cells = [
        TableCell(text=text, start_row_offset_idx=r, end_row_offset_idx=r + 1, start_col_offset_idx=c,
                  end_col_offset_idx=c + 1, column_header=r == 0)
        for r, row in enumerate(rows)
        for c, text in enumerate(row)
    ]
    doc.add_table(data=TableData(num_rows=len(rows), num_cols=len(rows[0]), table_cells=cells), prov=prov(page))


def visits(count: int) -> list[list[str]]:
    return [["Visit", "Procedure"]] + [[f"V{i}", f"blood sample, vital signs and ECG number {i}"] for i in range(count)]


def table_lines(rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(row)} |" for row in rows]


@pytest.fixture(scope="module")
def window(onnx_embedder) -> EmbedderTokenizer:  # type: ignore[no-untyped-def]
    return EmbedderTokenizer.of(onnx_embedder)


def test_chunks_fit_the_embedders_window_and_keep_small_items_whole(window: EmbedderTokenizer, onnx_embedder) -> None:  # type: ignore[no-untyped-def]
    doc = new_doc(range(1, 3))
    doc.add_title(text="Protocol", prov=prov(1))
    paragraphs = [f"Paragraph {i} describes visit procedures. " + "The patient returns. " * 12 for i in range(10)]
    for i, text in enumerate(paragraphs):
        doc.add_text(label=DocItemLabel.TEXT, text=text, prov=prov(1 + i // 5))
    add_table(doc, 2, visits(4))
    chunks = build_chunks(doc, window)
    assert window.get_max_tokens() == onnx_embedder.max_tokens == 254
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.tokens == onnx_embedder.count_tokens([chunk.text])[0] <= 254
        assert chunk.heading_path == ["Protocol"]
        assert chunk.text.startswith("Protocol\n")  # the heading path leads the embedded text
    for text in paragraphs + ["\n".join(table_lines(visits(4))[:1] + ["| - | - |"] + table_lines(visits(4))[1:])]:
        assert sum(text.strip() in chunk.text for chunk in chunks) == 1, text[:40]
    assert [chunk.chunk_index for chunk in chunks] == list(range(len(chunks)))
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 2


def test_heading_path_follows_levels(window: EmbedderTokenizer) -> None:
    doc = new_doc(range(1, 2))
    body = "Details of the section follow here. " * 3
    doc.add_title(text="Protocol", prov=prov(1))
    for level, title in ((1, "Eligibility"), (2, "Inclusion"), (2, "Exclusion"), (1, "Dosing")):
        doc.add_heading(text=title, level=level, prov=prov(1))
        doc.add_text(label=DocItemLabel.TEXT, text=f"{title}: {body}", prov=prov(1))
    paths = {chunk.text.split("\n")[-1].split(":")[0]: chunk.heading_path for chunk in build_chunks(doc, window)}
    assert paths == {
        "Eligibility": ["Protocol", "Eligibility"],
        "Inclusion": ["Protocol", "Eligibility", "Inclusion"],
        "Exclusion": ["Protocol", "Eligibility", "Exclusion"],
        "Dosing": ["Protocol", "Dosing"],
    }


def test_a_table_of_contents_is_not_chunked(window: EmbedderTokenizer) -> None:
    """Contents entries name every section and answer nothing: 13 % of the protocols' chunks were contents pieces,
    first hits of questions on every topic. They leave the chunks; the text around them stays."""
    doc = new_doc(range(1, 3))
    doc.add_heading(text="Table of Contents", level=1, prov=prov(1))
    contents = ("7.3. Blinding ........................................ 32 "
                "7.4. Dosage Modification ..................................32 "
                "9.5.5.1. Hypoglycemic Event Reporting .......................41")
    doc.add_text(label=DocItemLabel.TEXT, text=contents, prov=prov(1))
    doc.add_text(label=DocItemLabel.TEXT, text="Objectives and Endpoints .......................22", prov=prov(1))
    doc.add_heading(text="7.3. Blinding", level=1, prov=prov(2))
    doc.add_text(label=DocItemLabel.TEXT, text="This is an open-label study. Wait... the sites know the arm.",
                 prov=prov(2))
    chunks = build_chunks(doc, window)
    assert [chunk.heading_path for chunk in chunks] == [["7.3. Blinding"]]
    assert chunks[0].text.endswith("Wait... the sites know the arm.") and chunks[0].page_start == 2


def test_long_paragraph_splits_at_sentences(window: EmbedderTokenizer) -> None:
    doc = new_doc(range(1, 2))
    sentences = [f"Sentence number {i} says something about the dosing of the study drug." for i in range(80)]
    doc.add_text(label=DocItemLabel.TEXT, text=" ".join(sentences), prov=prov(1))
    chunks = build_chunks(doc, window)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.tokens <= 254
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith("study drug.")
    assert " ".join(chunk.text for chunk in chunks).split() == " ".join(sentences).split()


def test_long_table_splits_between_rows_with_its_header(window: EmbedderTokenizer) -> None:
    doc = new_doc(range(1, 2))
    doc.add_heading(text="Schedule of events", level=1, prov=prov(1))
    rows = visits(60)
    add_table(doc, 1, rows)
    parts = [chunk for chunk in build_chunks(doc, window) if TABLE in chunk.kinds]
    assert len(parts) > 1
    assert [part.table_part for part in parts] == [f"{i}/{len(parts)}" for i in range(1, len(parts) + 1)]
    body = []
    for part in parts:
        lines = part.text.splitlines()
        assert lines[:3] == ["Schedule of events", "| Visit | Procedure |", "| - | - |"]
        assert part.tokens <= 254
        body += lines[3:]
    assert body == table_lines(rows[1:])  # every row once, whole, in order


def test_a_row_longer_than_the_window_is_never_cut(window: EmbedderTokenizer) -> None:
    doc = new_doc(range(1, 2))
    rows = visits(3)
    rows[2][1] = "a very long free-text cell about the procedure " * 30  # ~300 word pieces on its own
    add_table(doc, 1, rows)
    chunks = build_chunks(doc, window)
    long_row = f"| {rows[2][0]} | {rows[2][1].strip()} |"
    holding = [chunk for chunk in chunks if long_row in chunk.text]
    assert len(holding) == 1 and holding[0].tokens > 254
    assert holding[0].text.startswith("| Visit | Procedure |\n| - | - |\n")
    for row in table_lines(rows[1:2] + rows[3:]):
        assert sum(row in chunk.text for chunk in chunks) == 1


def test_page_range_follows_a_paragraph_across_a_page_break(window: EmbedderTokenizer) -> None:
    doc = new_doc(range(12, 14))
    first = " ".join(f"Page twelve sentence {i} about exclusion criteria." for i in range(40))
    second = " ".join(f"Page thirteen sentence {i} about cardiac history." for i in range(40))
    text = f"{first} {second}"
    item = doc.add_text(label=DocItemLabel.TEXT, text=text, prov=prov(12, (0, len(first))))
    item.prov.append(prov(13, (len(first) + 1, len(text))))
    doc.add_text(label=DocItemLabel.TEXT, text="A short note on page thirteen.", prov=prov(13))
    chunks = build_chunks(doc, window)
    assert (chunks[0].page_start, chunks[0].page_end) == (12, 12)
    straddling = next(chunk for chunk in chunks if "sentence 39 about exclusion" in chunk.text)
    assert straddling.page_end == 13 or "Page thirteen" not in straddling.text
    assert (chunks[-1].page_start, chunks[-1].page_end) == (13, 13)
    assert "A short note" in chunks[-1].text


def test_headings_carry_across_page_range_shards(window: EmbedderTokenizer) -> None:
    """The first chunk of shard 2 sits under the heading shard 1 opened last, on its own page numbers."""
    shard_1, shard_2 = new_doc(range(1, 3)), new_doc(range(3, 5))
    shard_1.add_heading(text="Eligibility", level=1, prov=prov(1))
    shard_1.add_text(label=DocItemLabel.TEXT, text="Who may take part. " * 20, prov=prov(1))
    shard_1.add_heading(text="Exclusion criteria", level=1, prov=prov(2))
    shard_2.add_text(label=DocItemLabel.TEXT, text="Patients with a history of syncope. " * 20, prov=prov(3))
    merged = DoclingDocument.model_validate(concatenate_documents([shard_1.export_to_dict(), shard_2.export_to_dict()]))
    assert sorted(merged.pages) == [1, 2, 3, 4]
    chunk = next(chunk for chunk in build_chunks(merged, window) if "syncope" in chunk.text)
    assert chunk.heading_path == ["Exclusion criteria"]
    assert (chunk.page_start, chunk.page_end) == (3, 3)


def test_shards_with_a_gap_are_refused() -> None:
    with pytest.raises(RuntimeError, match="page numbers would shift"):
        concatenate_documents([new_doc(range(1, 3)).export_to_dict(), new_doc(range(4, 6)).export_to_dict()])


def test_content_hash_is_stable(window: EmbedderTokenizer) -> None:
    doc = new_doc(range(1, 2))
    doc.add_text(label=DocItemLabel.TEXT, text="alpha beta.", prov=prov(1))
    assert build_chunks(doc, window)[0].content_hash == build_chunks(doc, window)[0].content_hash


class ByteCounter:
    """Counts tokens as the OpenAI embedder does without a tokenizer: UTF-8 bytes."""

    name, max_tokens = "bytes", 8191

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.encode()) for text in texts]


def protocol_doc() -> DoclingDocument:
    doc = new_doc(range(1, 4))
    for page in range(1, 4):
        doc.add_heading(text=f"Section {page}", level=1, prov=prov(page))
        for i in range(8):
            text = f"Paragraph {i} on page {page}: the patient returns for visit {i} and blood is drawn. " * 3
            doc.add_text(label=DocItemLabel.TEXT, text=text, prov=prov(page))
        add_table(doc, page, visits(6))
    return doc


def test_chunks_are_about_the_character_target_whichever_embedder_counts(tmp_path, onnx_embedder):  # type: ignore[no-untyped-def]
    """The limit is ``chunk_target_chars`` in each embedder's own tokens: MiniLM's word pieces (the ONNX and the
    default static model share its tokenizer, so they cut the same chunks) and OpenAI's byte bound alike."""
    from ray_rag_dagster.backends.static_embedder import StaticEmbedder

    settings = Settings(home=tmp_path, chunk_target_chars=1000)
    doc = protocol_doc()
    static = StaticEmbedder(MODEL_CACHE)
    limits = {}
    for name, embedder in (("onnx", onnx_embedder), ("static", static), ("bytes", ByteCounter())):
        limits[name] = token_limit(settings, doc, embedder)
        chunks = build_chunks(doc, EmbedderTokenizer.of(embedder, limits[name]))
        assert all(chunk.tokens <= limits[name] for chunk in chunks)
        sizes = [len(chunk.text) for chunk in chunks]
        assert max(sizes) <= 1100 and sum(sizes) / len(sizes) > 500, (name, sizes)
        if name == "static":
            same = build_chunks(doc, EmbedderTokenizer.of(onnx_embedder, limits["onnx"]))
            assert [chunk.text for chunk in chunks] == [chunk.text for chunk in same]
    assert limits["onnx"] == limits["static"] < onnx_embedder.max_tokens < limits["bytes"]
    assert 950 <= limits["bytes"] <= 1050  # ASCII: one byte per character
    assert token_limit(Settings(home=tmp_path, chunk_max_tokens=100), doc, static) == 100
