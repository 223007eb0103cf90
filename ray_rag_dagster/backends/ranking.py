"""How a chunk is ranked for a query: what the full-text index reads, the fusion of the two legs, and the heading
and phrase boosts. Plain Python, no index library: a search imports it before knowing which index answers.

Measured on ``ray-rag evaluate`` (3 protocols, the 215 generated questions; README, *Quality*): the heading
boost and the plural rule took recall@5 / MRR@10 from 0.940 / 0.829 to 0.963 / 0.904, the short label questions
("LY900018 exclusion criterion: HIV") from 0.848 / 0.629 to 0.937 / 0.846; the 43 held-out written questions
moved 0.674 / 0.517 → 0.651 / 0.509 (one question).
"""

from __future__ import annotations

import re

# Latin and Greek plurals the full-text index's English stemmer keeps apart from their singular ("criteria" and
# "criterion" stem to two words): written as the singular on both sides, so "exclusion criterion: HIV" matches
# a chunk under "Exclusion Criteria", and "criterion" is no rarer a word than "criteria" in any document (rare,
# it made an amendment's "each criterion ... adds a criterion" the best match of every label question).
IRREGULAR_PLURALS = {
    "criteria": "criterion",
    "phenomena": "phenomenon",
    "analyses": "analysis",
    "diagnoses": "diagnosis",
    "prognoses": "prognosis",
    "hypotheses": "hypothesis",
    "metastases": "metastasis",
    "appendices": "appendix",
    "indices": "index",
    "matrices": "matrix",
    "stimuli": "stimulus",
    "bacteria": "bacterium",
    "fungi": "fungus",
}
# Study codes in a question: one word of 3+ letters and digits with at least two capitals (LZZT, BP30037,
# LY900018); the full-text index holds one as one token.
STUDY_CODE = re.compile(r"\b(?=[a-z0-9]*[A-Z][a-z0-9]*[A-Z])[A-Za-z][A-Za-z0-9]{2,}\b")

_PLURAL = re.compile(r"\b(" + "|".join(IRREGULAR_PLURALS) + r")\b", re.IGNORECASE)

# Score added to a chunk whose heading is what the query asks about (see heading_match): at 1.0 a full match
# is worth more than the full-text leg's whole range (0.85), so among chunks under "Exclusion Criteria" the two
# legs decide, and a chunk elsewhere that merely repeats the query's words comes after them. Flat between 0.8
# and 1.2 on the evaluation.
HEADING_BOOST = 1.0
# Score added to a chunk holding all the query's word pairs (phrase_match), less for fewer. Measured on the three
# protocols (README, Quality): all 258 questions R@5 / MRR@10 0.946 / 0.868 -> 0.950 / 0.893; flat from 0.3 to
# 0.7; pairs and triples score alike (0.950 / 0.892), quadruples less (0.946 / 0.886).
PHRASE_BOOST = 0.5
_PHRASE_WORD = re.compile(r"\w+")
# Two words agree when they share their first letters: a light stemmer ("criterion" / "criteria", "exclusion" /
# "excluded") that also forgives a misspelt ending ("Gastrointensinal").
STEM_LETTERS = 6
_WORD = re.compile(r"[^\W\d_][\w-]*")
_STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were what which who "
    "will with how when where does do study".split()
)


def normalise_terms(text: str) -> str:
    """``text`` with irregular plurals written as their singular (index and query alike)."""
    return _PLURAL.sub(lambda match: IRREGULAR_PLURALS[match[0].lower()], text)


def without_words(question: str, words: list[str]) -> str:
    """``question`` without ``words`` (whole words); the question itself when nothing else would be left."""
    if not words:
        return question
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b")
    return " ".join(pattern.sub(" ", question).split()) or question


def search_text(heading_path: str, text: str) -> str:
    """What the full-text index reads for a chunk: its heading path, then its text (which opens with the same
    headings, the chunker's context lines).

    The headings' words weigh twice so: measured, that is better than once (fresh ingest of the 3 protocols,
    generated questions: recall@5 / MRR@10 0.977 / 0.922 against 0.967 / 0.901 with the lines deduplicated).
    """
    return normalise_terms(f"{heading_path}\n{text}")


def _stems(text: str) -> set[str]:
    words = _WORD.findall(normalise_terms(text).casefold())
    return {word[:STEM_LETTERS] for word in words if word not in _STOP_WORDS and len(word) > 1}


def heading_match(query: str, heading_path: str) -> float:
    """How much the chunk's heading is what the query asks about, 0 to 1: the share of the heading's words in
    the query times the share of the query's words in the heading.

    "LY900018 exclusion criterion: HIV" under "6.2. Exclusion Criteria": 1 × 2/4 = 0.5. Both shares, so that a
    long question matches no heading by a stray shared word, and a one-word heading ("Safety") does not take
    every question that says "safety".
    """
    return _match(_stems(query), _stems(heading_path))


def _match(asked: set[str], heading: set[str]) -> float:
    if not heading or not asked:
        return 0.0
    shared = heading & asked
    return len(shared) / len(heading) * len(shared) / len(asked)


def fuse(text_scores: dict[str, float], vector_similarities: dict[str, float], text_weight: float) -> dict[str, float]:
    """Linear fusion of the two legs, each min-max normalised over its own candidates (absent = 0).

    Score-aware on purpose: reciprocal rank fusion throws away *how much* better the full-text leg's first
    hit is, and for an exact phrase or a lab threshold that margin is the signal.
    """

    def normalise(scores: dict[str, float]) -> dict[str, float]:
        if not scores:
            return {}
        low, high = min(scores.values()), max(scores.values())
        span = high - low
        return {key: (value - low) / span if span > 0 else 1.0 for key, value in scores.items()}

    text, vector = normalise(text_scores), normalise(vector_similarities)
    return {
        key: text_weight * text.get(key, 0.0) + (1.0 - text_weight) * vector.get(key, 0.0)
        for key in text.keys() | vector.keys()
    }


def phrase_match(query: str, text: str) -> float:
    """The share of the query's consecutive word pairs that occur in ``text``, 0 to 1: a question that quotes
    the protocol ("Change from Week 12 to follow-up for ESSDAI, ESSPRI and SF-36 scores") finds the passage it
    quotes rather than the ones that repeat its rarest words ("ESSDAI, ESSPRI"), which BM25 prefers."""
    return _phrase_share(_pairs(query), text)


def _pairs(text: str) -> set[tuple[str, str]]:
    # Plurals mapped word by word, not by normalise_terms' regex: 3x faster over a search's 40 candidates.
    words = [IRREGULAR_PLURALS.get(word, word) for word in _PHRASE_WORD.findall(text.casefold())]
    return set(zip(words, words[1:], strict=False))


def _phrase_share(asked: set[tuple[str, str]], text: str) -> float:
    return len(asked & _pairs(text)) / len(asked) if asked else 0.0


def boost(scores: dict[str, float], rows: dict[str, dict[str, str]], query: str) -> dict[str, float]:
    """Fused scores plus :data:`HEADING_BOOST` times each candidate's :func:`heading_match` and
    :data:`PHRASE_BOOST` times its :func:`phrase_match` (``rows``: each candidate's ``heading_path`` and
    ``text``)."""
    asked, pairs = _stems(query), _pairs(query)  # once per query, not per candidate
    return {
        key: score
        + HEADING_BOOST * _match(asked, _stems(rows[key]["heading_path"]))
        + PHRASE_BOOST * _phrase_share(pairs, rows[key]["text"])
        for key, score in scores.items()
    }
