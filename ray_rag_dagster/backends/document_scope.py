"""Which document a question names by a study code, and which of its codes are that document's name.

A short question that names its study ("LZZT exclusion criterion: Syncope") is about that study's document, and
the other words ("exclusion criterion") match every protocol: searching the named document only took
criterion-label questions from recall@5 0.709 to 0.785 (README, Quality).

Within that document, a code in at least :data:`STUDY_NAME_SHARE` of its chunks is its name (page headers, the
title, the drug's code: 25-47 % of the chunks in the three protocols; a lab or a scale such as ``HIV``, ``ECG``
or ``ESSDAI``: at most 13 %) and ranks nothing, so it is left out of the query that ranks the document's
passages: the title and synopsis pages, which repeat it, came first ("LY900018 study phase"). Measured on the
three protocols (README, Quality): written questions recall@5 0.628 → 0.721, label questions 0.962 → 0.975.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ray_rag_dagster.backends.ranking import STUDY_CODE
from ray_rag_dagster.ids import safe_document_id

SCOPE_PROBE_ROWS = 10_000  # chunks that may hold a code, looked at to find which documents do
STUDY_NAME_SHARE = 0.2
CACHE_SIZE = 1024


class DocumentScope:
    """Answers from a LanceDB table, cached per table version: a long-lived server asks once per version (the
    probes read up to SCOPE_PROBE_ROWS rows: milliseconds at 100k chunks)."""

    def __init__(self) -> None:
        self._facts: dict[tuple[int, str], Any] = {}

    def named(self, table: Any, query: str) -> tuple[str | None, list[str]]:
        """The one document a study code of ``query`` (a word with two capitals or more: ``LZZT``, ``BP30037``,
        also ``HIV``) occurs in, if there is exactly one, else None; and the query's codes that are its name."""
        scope, names = None, []
        for code in dict.fromkeys(STUDY_CODE.findall(query)):
            holders = self._chunks_holding(table, code.lower())
            if len(holders) != 1 or scope not in (None, *holders):
                continue
            [(document_id, held)] = holders.items()
            scope = document_id
            rows = self._cached(table, f"rows {document_id}",
                                lambda where=f"document_id = '{document_id}'": table.count_rows(where))
            if held >= STUDY_NAME_SHARE * rows:
                names.append(code)
        return (safe_document_id(scope) if scope else None), names

    def _chunks_holding(self, table: Any, code: str) -> dict[str, int]:
        """How many chunks of each document hold ``code``."""

        def probe() -> dict[str, int]:
            rows = (table.search(code, query_type="fts", fts_columns="search_text")
                    .select(["document_id", "_score"]).limit(SCOPE_PROBE_ROWS).to_list())
            return dict(Counter(row["document_id"] for row in rows))

        return self._cached(table, f"holding {code}", probe)

    def _cached(self, table: Any, key: str, compute: Callable[[], Any]) -> Any:
        versioned = (table.version, key)
        if versioned not in self._facts:
            if len(self._facts) >= CACHE_SIZE:
                self._facts.clear()
            self._facts[versioned] = compute()
        return self._facts[versioned]
