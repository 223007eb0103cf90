"""Whether a retrieved text holds a question's answer, and whether the PDF holds it at all.

**Relevance.** Text is NFKC-normalised, lower-cased and split into word tokens; *content words* are the tokens
that are not in bm25s's English stop-word list (``STOPWORDS_EN_PLUS``). A retrieved passage is relevant when
it comes from the question's document and, for some stretch of at most 30 consecutive content words of the
answer (stretches start every 10 words; a shorter answer is one stretch), at least 70% of the stretch's
distinct content words occur in the retrieved text. Long criteria (a medication list) count as found when a
chunk holds a good part of them; a chunk that merely shares a criterion's boilerplate prefix ("A history
within the last 5 years of a serious ... disorder") does not reach 70%.

**Answerable questions.** A question counts only when its passage is in the PDF's text layer: some stretch
passes the same 70% test within a span of twice its length of the document's content words. This drops
passages the USDM authors paraphrased, and does not depend on any chunking.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from bm25s.stopwords import STOPWORDS_EN_PLUS

RELEVANCE_STRETCH = 30  # content words of the answer judged at a time
RELEVANCE_STEP = 10
RELEVANCE_COVERAGE = 0.7

_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)


def content_words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (NFKC: ligatures, full-width forms), stop words dropped."""
    tokens = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return [token for token in tokens if token not in _STOPWORDS and (len(token) > 1 or token.isdigit())]


def answer_stretches(answer_words: Sequence[str]) -> list[frozenset[str]]:
    """The distinct content words of each stretch of the answer that is judged on its own."""
    if len(answer_words) <= RELEVANCE_STRETCH:
        return [frozenset(answer_words)]
    last = len(answer_words) - RELEVANCE_STRETCH
    starts = sorted({*range(0, last + 1, RELEVANCE_STEP), last})
    return [frozenset(answer_words[start : start + RELEVANCE_STRETCH]) for start in starts]


def _covered(stretch: frozenset[str], found: int) -> bool:
    return found >= RELEVANCE_COVERAGE * len(stretch)


def passage_matches(stretches: Sequence[frozenset[str]], passage: str) -> bool:
    """The relevance test on one retrieved text (the document is checked by the caller)."""
    words = set(content_words(passage))
    return any(_covered(stretch, len(stretch & words)) for stretch in stretches)


def occurs_in(answer_words: Sequence[str], document_words: Sequence[str]) -> bool:
    """Whether some stretch of the answer passes the relevance test within a span of the document of twice
    its length: the passage is (nearly) contiguous in the document, whatever the chunking."""
    span = 2 * min(len(answer_words), RELEVANCE_STRETCH)
    for stretch in answer_stretches(answer_words):
        if not _covered(stretch, len(stretch & set(document_words))):
            continue
        window: Counter[str] = Counter()
        for position, word in enumerate(document_words):
            if word in stretch:
                window[word] += 1
            if position >= span:
                leaving = document_words[position - span]
                if leaving in stretch:
                    window[leaving] -= 1
                    if not window[leaving]:
                        del window[leaving]
            if _covered(stretch, len(window)):
                return True
    return False
