"""What is evaluated: the pipeline's search, and the baseline it is compared with.

The pipeline side is whatever index the settings select, through :func:`ray_rag_dagster.search.search_index`.

**Baseline.** BM25 (``bm25s``, Lucene scoring, k1=1.5, b=0.75, English stop words, no stemming) over
non-overlapping 1500-character windows of each PDF's raw text layer (pypdfium2, pages concatenated; windows
never span two documents), on the same questions with the same relevance test. Its corpus is the evaluated
documents only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ray_rag_dagster.settings import Settings

BASELINE_WINDOW_CHARS = 1500


@dataclass(frozen=True)
class Passage:
    document: str  # the PDF's file name
    text: str


class Retriever(Protocol):
    name: str

    def retrieve(self, question: str, depth: int) -> list[Passage]: ...


class IndexRetriever:
    """The pipeline's search over whatever index the settings select."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = "pipeline"

    def retrieve(self, question: str, depth: int) -> list[Passage]:
        from ray_rag_dagster.search import search_index

        hits = search_index(self.settings, question, depth)
        return [Passage(hit.source_key.rsplit("/", 1)[-1], hit.text) for hit in hits]


def text_layer(pdf: bytes) -> str:
    """The PDF's own text layer, pages in order (what a plain extractor sees)."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        pages = []
        for index in range(len(document)):
            page = document[index]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return "\n".join(pages)
    finally:
        document.close()


class BM25WindowBaseline:
    """BM25 over fixed, non-overlapping character windows of each document's text layer."""

    def __init__(self, texts: dict[str, str], window_chars: int = BASELINE_WINDOW_CHARS) -> None:
        import bm25s

        self.name = "bm25_baseline"
        self.passages = [
            Passage(document, text[start : start + window_chars])
            for document, text in texts.items()
            for start in range(0, len(text), window_chars)
        ]
        self._bm25 = bm25s.BM25()
        corpus = bm25s.tokenize([passage.text for passage in self.passages], stopwords="en", show_progress=False)
        self._bm25.index(corpus, show_progress=False)

    def retrieve(self, question: str, depth: int) -> list[Passage]:
        import bm25s

        tokens = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)
        ids, scores = self._bm25.retrieve(tokens, k=min(depth, len(self.passages)), show_progress=False)
        # Windows sharing no word with the question score 0: they are not retrieved.
        return [self.passages[int(index)] for index, score in zip(ids[0], scores[0], strict=True) if score > 0]
