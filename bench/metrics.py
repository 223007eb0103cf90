"""Extraction quality against groundtruth Markdown: word-sequence similarity, heading recall, table cell F1."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter

_TABLE_SEPARATOR = re.compile(r"^\|(?:\s*:?-{1,}:?\s*\|)+\s*$", re.M)
_SEPARATOR_CELL = re.compile(r"^:?-+:?$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def normalise(text: str) -> str:
    """NFKC, lower case, word characters only, single spaces: for comparing headings and cells."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.findall(r"\w+", text))


def words(markdown: str) -> list[str]:
    """The words of a Markdown text, without markup (comments, table rules, #, *, |)."""
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.S)
    text = _TABLE_SEPARATOR.sub(" ", text)
    return re.sub(r"[#*|]", " ", text).split()


def word_similarity(truth: str, ours: str) -> float:
    """difflib's ratio on the two word lists: 1.0 = same words in the same order."""
    return difflib.SequenceMatcher(None, words(truth), words(ours), autojunk=False).ratio()


def headings(markdown: str) -> list[str]:
    """Normalised text of the Markdown heading lines (``#`` .. ``######``)."""
    found = []
    for line in markdown.splitlines():
        match = re.match(r"^\s*#{1,6}\s+(.*)$", line)
        if match and normalise(match.group(1)):
            found.append(normalise(match.group(1)))
    return found


def heading_recall(truth: str, ours: str) -> float | None:
    """Share of the groundtruth headings that are headings in ours too; None when the truth has none."""
    expected = headings(truth)
    if not expected:
        return None
    available = Counter(headings(ours))
    found = 0
    for heading in expected:
        if available[heading] > 0:
            available[heading] -= 1
            found += 1
    return found / len(expected)


def table_cells(markdown: str) -> Counter[str]:
    """Bag of normalised, non-empty cell texts of every Markdown table row (rule rows left out)."""
    cells: Counter[str] = Counter()
    for line in markdown.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")) or len(line) < 2:
            continue
        parts = [part.strip() for part in _CELL_SPLIT.split(line[1:-1])]
        if all(_SEPARATOR_CELL.match(part) for part in parts if part):
            continue
        cells.update(text for text in (normalise(part.replace("\\|", "|")) for part in parts) if text)
    return cells


def table_cell_f1(truth: str, ours: str) -> float | None:
    """F1 of the two bags of cell texts; None when the truth has no table."""
    expected, got = table_cells(truth), table_cells(ours)
    if not expected:
        return None
    overlap = sum((expected & got).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(got.values())
    recall = overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)
