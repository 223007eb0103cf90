"""A large, realistic index for the search benchmarks: chunks cut from the real PDFs, with model vectors.

**Text.** Every PDF under ``shared/data/pdfs`` gives its text layer (pypdfium2) as sentences; overlapping runs
of 3–6 consecutive sentences are *segments* (≈ 1,800 of them, 300–900 characters each). A chunk is two
segments from different places joined, ≈ 1,000–1,600 characters like the chunker's, and no two chunks are the
same pair, so 100,000 chunks have 100,000 distinct texts.

**Vectors.** Only the segments are embedded for real (embedding 100,000 chunks with MiniLM on 2 cores would
take hours), by the project's default embedder (:data:`EMBEDDER`, the static model; ``BENCH_SEARCH_EMBEDDER=onnx``
for MiniLM), cached under ``~/.cache/ray-rag-bench/search/``. A chunk's vector is the normalised sum of its two
segments' vectors: how MiniLM pools a text longer than one window, and close to the static model's mean over
the whole text. So the vector leg answers real questions about real text.

**Questions.** The answer keys' questions (``ray_rag_dagster.evaluation``), each also cut to its first 6
words and to its content words, plus sentence starts from the PDFs: short and long, keyword and prose.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import SHARED_DATA, progress_line, sentences_of

SEGMENT_SENTENCES = (3, 6)
SEGMENT_STEP = 2  # a segment starts every other sentence: overlapping, distinct segments
MODEL = "all-MiniLM-L6-v2"
# What the search bench embeds with, as `ray-rag serve` does by default (settings.embedder).
EMBEDDER = os.environ.get("BENCH_SEARCH_EMBEDDER", "static")
DOCUMENT_CHUNKS = 500  # chunks per generated document (a long protocol has a few hundred)


def cache_folder() -> Path:
    from bench.datasets import cache_dir

    folder = cache_dir() / "search"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def segments() -> list[tuple[str, str]]:
    """(source PDF stem, segment text) for every PDF of the shared data, in a fixed order."""
    found: list[tuple[str, str]] = []
    rng = random.Random(11)
    for pdf in sorted((SHARED_DATA / "pdfs").rglob("*.pdf")):
        sentences = sentences_of(pdf)
        for start in range(0, max(len(sentences) - SEGMENT_SENTENCES[0], 0) + 1, SEGMENT_STEP):
            text = " ".join(sentences[start : start + rng.randint(*SEGMENT_SENTENCES)])
            if 300 <= len(text) <= 900:
                found.append((pdf.stem, text))
    return found


def bench_embedder() -> Any:
    """The :data:`EMBEDDER` the index's vectors and the questions' come from (the server builds the same one)."""
    if EMBEDDER == "static":
        from ray_rag_dagster.backends.static_embedder import StaticEmbedder

        return StaticEmbedder(models_folder(), MODEL)
    from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(models_folder(), MODEL)


def segment_vectors(texts: list[str]) -> np.ndarray:
    """The embedder's vector of every segment, cached by the segments' content and the embedder (minutes to
    build once with MiniLM, seconds with the static model)."""
    digest = hashlib.sha256("\x00".join([EMBEDDER, *texts]).encode()).hexdigest()[:16]
    path = cache_folder() / f"segments-{digest}.npy"
    if path.is_file():
        return np.load(path)
    embedder = bench_embedder()
    batches = [texts[start : start + 64] for start in range(0, len(texts), 64)]
    parts = []
    with progress_line(f"embedding {len(texts)} segments once", total=len(batches)) as update:
        for batch in batches:
            parts.append(embedder.embed_documents(batch).vectors)
            update(advance=1)
    vectors = np.concatenate(parts).astype(np.float32)
    staging = path.with_suffix(".partial.npy")
    np.save(staging, vectors)
    staging.replace(path)
    return vectors


def models_folder() -> Path:
    """Where the embedders' files live for the benchmarks (the ONNX export once, ≈ 15 s, the static model distilled
    from it when used; state homes link to it)."""
    from ray_rag_dagster.backends.onnx_embedder import ensure_onnx_model

    folder = cache_folder() / "models"
    ensure_onnx_model(folder, MODEL)
    return folder


class Corpus:
    """``count`` distinct chunks: text, source PDF and vector, drawn deterministically from the segments."""

    def __init__(self, count: int, seed: int = 7, segment_limit: int | None = None) -> None:
        pieces = segments()[:segment_limit]  # a limit: fewer to embed (a smoke test)
        self.sources = [stem for stem, _ in pieces]
        self.segment_texts = [text for _, text in pieces]
        vectors = segment_vectors(self.segment_texts)
        rng = np.random.default_rng(seed)
        pairs: set[tuple[int, int]] = set()
        total = len(pieces)
        assert total * (total - 1) > 2 * count, "not enough segments for distinct chunks"
        while len(pairs) < count:
            for first, second in rng.integers(0, total, size=(count, 2)).tolist():
                if first != second and len(pairs) < count:
                    pairs.add((first, second))
        self.pairs = sorted(pairs, key=lambda pair: hash(pair) ^ seed)  # documents mix sources
        summed = vectors[[a for a, _ in self.pairs]] + vectors[[b for _, b in self.pairs]]
        self.vectors = (summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def text(self, index: int) -> str:
        first, second = self.pairs[index]
        return f"{self.segment_texts[first]} {self.segment_texts[second]}"

    def records(self, document_number: int, start: int, stop: int) -> list[Any]:
        from ray_rag_dagster.backends.vector_index import IndexRecord
        from ray_rag_dagster.ids import chunk_id, content_hash, document_id_for

        key = f"input/bench-{document_number:05d}.pdf"
        document_id = document_id_for(key)
        records = []
        for position, index in enumerate(range(start, stop)):
            text = self.text(index)
            digest = content_hash(text)
            source = self.sources[self.pairs[index][0]]
            records.append(IndexRecord(
                id=chunk_id(document_id, digest), document_id=document_id, processing_version="bench",
                source_key=key, chunk_index=position, page_start=1 + position // 3, page_end=1 + position // 3,
                heading_path=f"{source} > Section {1 + position // 20}", text=text, content_hash=digest,
                entities={"people": [], "organizations": [], "medications": []}, key_phrases=[], redactions={},
                embed_model=f"{MODEL}-{EMBEDDER}", vector=self.vectors[index],
            ))
        return records

    def load(self, index: Any, start: int, stop: int) -> None:
        """Rows ``start:stop`` into ``index`` through ``replace_document``, :data:`DOCUMENT_CHUNKS` chunks a
        document (as the load stage writes a document's chunks)."""
        for first in range(start, stop, DOCUMENT_CHUNKS):
            number = first // DOCUMENT_CHUNKS
            records = self.records(number, first, min(first + DOCUMENT_CHUNKS, stop))
            index.replace_document(records[0].document_id, records)


def questions(count: int, seed: int = 5) -> list[str]:
    """``count`` varied questions: the answer keys' (whole, first 6 words, content words only), then sentence
    starts of 4–10 words from the PDFs."""
    from ray_rag_dagster.evaluation.answer_keys import default_answer_keys_dir, load_questions
    from ray_rag_dagster.evaluation.relevance import content_words

    asked: list[str] = []
    for question in load_questions(default_answer_keys_dir()):
        words = question.text.split()
        asked += [question.text, " ".join(words[:6]), " ".join(content_words(question.text))]
    rng = random.Random(seed)
    sentences = [text for _, text in segments()]
    while len(set(asked)) < count:
        words = re.sub(r"\s+", " ", rng.choice(sentences)).split()
        asked.append(" ".join(words[: rng.randint(4, 10)]))
    unique = [text for text in dict.fromkeys(asked) if text.strip()]
    rng.shuffle(unique)
    return unique[:count]
