from __future__ import annotations

from ray_rag_dagster.stages.chunk import TABLE, build_chunks, classify, split_prose, split_table
from ray_rag_dagster.stages.page_markdown import BOUNDARY

SEP = f"\n\n{BOUNDARY}\n\n"


def page(no: int, *elements: str) -> dict:
    return {"page_no": no, "markdown": SEP.join(elements)}


def table(rows: int, width: int = 20) -> str:
    lines = ["| visit | procedure |", "|---|---|"]
    lines += [f"| V{i} | {'x' * width} {i} |" for i in range(rows)]
    return "\n".join(lines)


def test_classify_elements() -> None:
    assert classify("## 5 Inclusion") == ("heading", 2)
    assert classify(table(2))[0] == TABLE
    assert classify("*Table 1: Visits*\n\n" + table(2))[0] == TABLE
    assert classify("- Age 18 to 75\n- HbA1c 7%")[0] == "list"
    assert classify("Participants must consent.")[0] == "paragraph"


def test_small_elements_group_and_never_split() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(8)]  # ~320 chars each
    pages = [page(1, "# Protocol", *paragraphs[:4]), page(2, table(5), *paragraphs[4:])]
    chunks = build_chunks(pages, target_chars=1000)
    texts = "\n".join(chunk.text for chunk in chunks)
    for element in [*paragraphs, table(5)]:
        # Each element sits whole inside exactly one chunk.
        assert sum(element.strip() in chunk.text for chunk in chunks) == 1, element[:30]
    assert all(len(chunk.text) <= 1000 for chunk in chunks)
    assert texts.count("Paragraph") == 8
    assert chunks[0].heading_path == ["Protocol"]
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))


def test_page_range_spans_pages() -> None:
    chunks = build_chunks([page(3, "short one."), page(4, "short two.")], target_chars=1500)
    assert len(chunks) == 1
    assert (chunks[0].page_start, chunks[0].page_end) == (3, 4)


def test_heading_path_follows_levels() -> None:
    body = "text " * 80
    pages = [page(1, "# Protocol", "## Eligibility", "### Inclusion", body, "### Exclusion", body, "## Dosing", body)]
    chunks = build_chunks(pages, target_chars=500)
    paths = [chunk.heading_path for chunk in chunks]
    assert ["Protocol", "Eligibility", "Inclusion"] in paths
    assert ["Protocol", "Eligibility", "Exclusion"] in paths
    assert ["Protocol", "Dosing"] in paths


def test_long_paragraph_splits_at_sentences() -> None:
    sentences = [f"Sentence number {i} says something about dosing." for i in range(60)]
    chunks = build_chunks([page(1, " ".join(sentences))], target_chars=400)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk.text) <= 400
        assert chunk.text.endswith(".")
        assert chunk.text.startswith("Sentence")


def test_long_table_splits_by_rows_with_header() -> None:
    big = table(80)
    chunks = build_chunks([page(1, "intro paragraph.", big)], target_chars=800)
    parts = [chunk for chunk in chunks if chunk.table_part]
    assert len(parts) > 1
    assert [part.table_part for part in parts] == [f"{i}/{len(parts)}" for i in range(1, len(parts) + 1)]
    rows = []
    for part in parts:
        lines = part.text.splitlines()
        assert lines[:2] == ["| visit | procedure |", "|---|---|"]
        rows += lines[2:]
    assert rows == big.splitlines()[2:]


def test_table_caption_stays_with_first_part() -> None:
    parts = split_table("*Table 3: Schedule*\n" + table(40), 400)
    assert parts[0].startswith("*Table 3: Schedule*\n| visit | procedure |")
    assert all(part.startswith("| visit | procedure |\n|---|---|") for part in parts[1:])


def test_split_helpers_keep_every_word() -> None:
    text = "One. Two two. " + "averyveryverylongword " * 30
    pieces = split_prose(text, 100)
    assert " ".join(pieces).split() == text.split()
    assert all(len(piece) <= 100 for piece in pieces)
    assert split_table(table(1), 10) == [table(1)]


def test_content_hash_is_stable() -> None:
    pages = [page(1, "# A", "alpha beta.")]
    assert build_chunks(pages, 1500)[0].content_hash == build_chunks(pages, 1500)[0].content_hash
