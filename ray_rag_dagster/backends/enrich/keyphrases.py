"""Key phrases of a chunk with YAKE, over the redacted text, never spanning a heading, table cell or redaction."""

from __future__ import annotations

import functools
import re
from typing import Any

from ray_rag_dagster.backends.enrich.base import KEY_PHRASES, REDACTED

_STRUCTURAL_LINE = re.compile(r"^\s*(?:#{1,6}\s|[|>]|[-*+\u2022]\s|\d+(?:\.\d+)*[.)]\s|\d+(?:\.\d+)+\s)")
_MARKUP = re.compile(r"\|+|:?-{3,}:?|\.{3,}|[*_`#]+")


@functools.cache
def _keyword_extractor() -> Any:
    import yake

    return yake.KeywordExtractor(lan="en", n=3, top=KEY_PHRASES * 3)


def _phrase_source(redacted: str) -> str:
    """Text for YAKE with block boundaries made explicit, so no phrase spans a heading, table cell or redaction.

    YAKE joins words across newlines; wrapped paragraph lines should join, headings and rows should not.
    """
    lines = []
    for line in redacted.replace(REDACTED, " ; ").splitlines():
        if not line.strip():
            lines.append(" ; ")
        elif _STRUCTURAL_LINE.match(line):
            lines.append(f" ; {line} ; ")
        else:
            lines.append(line)
    return _MARKUP.sub(" ; ", " ".join(lines))


def find_key_phrases(redacted: str) -> list[str]:
    """YAKE's best phrases, skipping any that sits inside a better one ("mild injection-site" after
    "mild injection-site reactions"), so the few phrases kept say different things."""
    kept: list[str] = []
    for phrase, _ in _keyword_extractor().extract_keywords(_phrase_source(redacted)):
        words = f" {phrase.casefold()} "
        if "redacted" in words or any(words in f" {k.casefold()} " for k in kept):
            continue
        kept.append(phrase)
        if len(kept) == KEY_PHRASES:
            break
    return kept
