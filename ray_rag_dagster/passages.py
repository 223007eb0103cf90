"""The part of a chunk that matched a question, and where the question's words occur in it.

Standard library only: the search CLI's fast path (answers from a running ``ray-rag serve``) and the search
service both use it, and the fast path must not pay for numpy, LanceDB or an embedding model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PASSAGE_CHARS = 600
# Words too common to be worth highlighting (and to steer which part of a long chunk is shown).
_COMMON_WORDS = (
    "the and for with what which who whom whose when where why how are was were is be been being this that these "
    "those from into onto than then there their them they its it's of to in on at by or an a as not no any all "
    "can could should would will may might must does did do has have had about after before between during"
)
_COMMON = frozenset(_COMMON_WORDS.split())


@dataclass(frozen=True)
class Passage:
    """``text`` is ``chunk[start:end]``; ``highlights`` are ``(start, end)`` offsets into ``text``."""

    text: str
    start: int
    end: int
    highlights: list[tuple[int, int]]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end,
                "highlights": [list(span) for span in self.highlights]}


def query_terms(question: str) -> list[str]:
    """The question's distinct words worth looking for: numbers, and words of 3+ letters that are not common."""
    terms: list[str] = []
    for word in re.findall(r"[^\W_]+", question.lower()):
        if (word.isdigit() or len(word) >= 3) and word not in _COMMON and word not in terms:
            terms.append(word)
    return terms


def _term_pattern(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    # Whole words, with a plural ending allowed: "criterion" does not light up inside "criteria", but
    # "dose" matches "doses"; longest first so "hba1c" wins over "hba".
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?:s|es)?(?![^\W_])", re.IGNORECASE)


def highlight_spans(text: str, question: str) -> list[tuple[int, int]]:
    """Offsets of the question's words in ``text``, in order, non-overlapping."""
    pattern = _term_pattern(query_terms(question))
    return [] if pattern is None else [match.span() for match in pattern.finditer(text)]


def matched_passage(text: str, question: str, width: int = PASSAGE_CHARS) -> Passage:
    """The ``width`` characters of ``text`` holding the most distinct words of the question (long chunks
    would otherwise show only their first lines, not the part that matched), with the words' offsets."""
    spans = highlight_spans(text, question)
    begin = 0
    if len(text) > width and spans:
        words = [text[start:end].lower() for start, end in spans]
        best_hits = -1
        for start, _ in spans:
            candidate = max(0, min(start - width // 5, len(text) - width))
            hits = len({word for (s, e), word in zip(spans, words) if s >= candidate and e <= candidate + width})
            if hits > best_hits:
                begin, best_hits = candidate, hits
    end = min(len(text), begin + width)
    # Cut on word boundaries (never in the middle of a word or of a highlighted term).
    if begin > 0:
        gap = re.compile(r"\s+").search(text, begin, min(end, begin + 40))
        first = next((start for start, _ in spans if start >= begin), len(text))
        if gap and gap.end() <= first:
            begin = gap.end()
    if end < len(text):
        cut = text.rfind(" ", max(begin, end - 40), end)
        if cut > begin and all(stop <= cut or start >= end for start, stop in spans):
            end = cut
    inside = [(start - begin, stop - begin) for start, stop in spans if start >= begin and stop <= end]
    return Passage(text[begin:end], begin, end, inside)


def snippet(text: str, question: str, width: int = PASSAGE_CHARS) -> str:
    """The matched passage as plain text, with an ellipsis where the chunk goes on."""
    passage = matched_passage(text, question, width)
    return ("… " if passage.start > 0 else "") + passage.text + (" …" if passage.end < len(text) else "")
