"""Retrieval evaluation: questions from human-written USDM answer keys, scored on the index and on a baseline.

**Answer keys.** ``shared/data/groundtruth/clinical/*.json`` are CDISC USDM v4 study definitions written by
people from the two clinical protocols. Every eligibility criterion, objective and endpoint in them is an
*answer passage*: its text with the USDM markup removed (HTML stripped, entities unescaped, ``<usdm:tag>``
parameters resolved through the study's syntax-template dictionaries, e.g. ``min_age`` → ``50``).

**Questions** (deterministic: JSON order, no randomness). Each passage gives one or two questions:

- ``*-text``: the passage's first sentence, cut to at most 20 words (verbatim wording, often partial);
- ``criterion-label``: ``"<Inclusion|Exclusion> criterion: <label>"`` from the criterion's human-written
  ``label`` (or ``description``), e.g. "Inclusion criterion: MMSE Score", "Exclusion criterion: Hep C";
- ``objective-label``: "What is the primary objective?" when the design has one objective of that level,
  else ``"<level>: <description>"`` when the objective has a description ("Secondary Objective: Safety").

Passages with fewer than 3 content words ("Adverse events") or still to be written ("*** To be determined
from protocol ***") are left out: too unspecific to judge a hit.

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

**Metrics.** recall@k (k=5 by default): the share of questions with a relevant passage in the top k (one
answer passage per question, so this is the hit rate); MRR@10: mean of 1/rank of the first relevant passage
in the top 10 (0 when none). Reported per document, per question kind and overall.

**Baseline.** BM25 (``bm25s``, Lucene scoring, k1=1.5, b=0.75, English stop words, no stemming) over
non-overlapping 1500-character windows of each PDF's raw text layer (pypdfium2, pages concatenated; windows
never span two documents), on the same questions with the same relevance test. Its corpus is the evaluated
documents only.

The pipeline side is whatever index the settings select, through :func:`ray_rag_dagster.search.search_index`.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.table import Table

from ray_rag_dagster.settings import Settings

# The answer keys and the protocol each one was written from (the PDF's file name in the inbox).
ANSWER_KEY_SOURCES: dict[str, str] = {
    "ddf-sdr-api-study-cdisc-pilot-sample-usdm-v4.json": "CDISC_Pilot_Study.pdf",
    "ddf-sdr-api-study-EliLilly-Diabetes-sample-usdm-v4.json": "EliLilly_NCT03421379_Diabetes.pdf",
}

RECALL_K = 5
MRR_DEPTH = 10
QUESTION_MAX_WORDS = 20
MIN_ANSWER_CONTENT_WORDS = 3
RELEVANCE_STRETCH = 30  # content words of the answer judged at a time
RELEVANCE_STEP = 10
RELEVANCE_COVERAGE = 0.7
BASELINE_WINDOW_CHARS = 1500
_TO_BE_DETERMINED = re.compile(r"to be determined", re.IGNORECASE)


def default_answer_keys_dir() -> Path:
    """``shared/data/groundtruth/clinical`` beside the repository (where CI and developers have it)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "groundtruth" / "clinical"


# --- Text normalisation and relevance ---------------------------------------------------------------

_WORD = re.compile(r"\w+")


