"""One evaluation: the answerable questions about the indexed protocols, asked of the index and the baseline."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray_rag_dagster.evaluation.answer_keys import Question, default_answer_keys_dir, load_questions
from ray_rag_dagster.evaluation.metrics import MRR_DEPTH, RECALL_K, Scores, SystemRun, run_system
from ray_rag_dagster.evaluation.relevance import content_words, occurs_in
from ray_rag_dagster.evaluation.retrievers import BM25WindowBaseline, IndexRetriever, text_layer
from ray_rag_dagster.settings import Settings


class DocumentsNotIndexed(RuntimeError):
    """None of the answer keys' protocols is in the index: there is nothing to evaluate."""


@dataclass
class EvaluationReport:
    k: int
    settings_summary: dict[str, Any]
    documents: list[str]  # evaluated
    missing: dict[str, str]  # PDF → why it could not be evaluated
    questions: list[Question]  # answerable, evaluated
    unanswerable: list[Question]  # passage not found in the PDF's text layer
    systems: list[SystemRun] = field(default_factory=list)

    def groups(self) -> Iterator[tuple[str, list[Question]]]:
        """Overall, then per document, then per question kind."""
        yield "overall", self.questions
        by_document: dict[str, list[Question]] = defaultdict(list)
        by_kind: dict[str, list[Question]] = defaultdict(list)
        for question in self.questions:
            by_document[question.document].append(question)
            by_kind[question.kind].append(question)
        for name in sorted(by_document):
            yield name, by_document[name]
        for name in sorted(by_kind):
            yield f"kind: {name}", by_kind[name]

    def scores(self, system: str, questions: Iterable[Question] | None = None) -> Scores:
        run = next(run for run in self.systems if run.name == system)
        return run.scores(self.questions if questions is None else questions, self.k)

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "mrr_depth": MRR_DEPTH,
            "settings": self.settings_summary,
            "documents": self.documents,
            "missing": self.missing,
            "questions": len(self.questions),
            "unanswerable": [question.id for question in self.unanswerable],
            "scores": {
                run.name: {group: asdict(run.scores(questions, self.k)) for group, questions in self.groups()}
                for run in self.systems
            },
            "per_question": [
                {
                    "id": question.id,
                    "question": question.text,
                    **{run.name: run.ranks[question.id] for run in self.systems},
                }
                for question in self.questions
            ],
        }


def indexed_documents(settings: Settings, names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Which protocols are in the index (and their PDF in the object store); why the others are not."""
    from ray_rag_dagster.backends import build_object_store, build_vector_index
    from ray_rag_dagster.ids import document_id_for

    index, store = build_vector_index(settings), build_object_store(settings)
    available, missing = [], {}
    for name in names:
        key = f"input/{name}"
        if index.count(document_id_for(key)) == 0:
            missing[name] = "not in the index"
        elif not store.exists(key):
            missing[name] = f"indexed, but {key} is not in the object store (the baseline needs it)"
        else:
            available.append(name)
    return available, missing


def run_evaluation(
    settings: Settings,
    answer_keys_dir: Path | None = None,
    *,
    k: int = RECALL_K,
    only_documents: Iterable[str] | None = None,
) -> EvaluationReport:
    """Score the index and the BM25 baseline on the answer keys' questions.

    Every protocol with an answer key that is in the index is part of the baseline's corpus; questions are
    asked only about ``only_documents`` when given (an asset check on one partition).
    """
    from ray_rag_dagster.backends import build_object_store

    questions = load_questions(answer_keys_dir or default_answer_keys_dir())
    available, missing = indexed_documents(settings, dict.fromkeys(question.document for question in questions))
    if not available:
        reasons = "; ".join(f"{name}: {why}" for name, why in missing.items())
        raise DocumentsNotIndexed(
            f"none of the answer keys' protocols can be evaluated ({reasons}); "
            "ingest them first: ray-rag ingest ../shared/data/pdfs/clinical/*.pdf"
        )
    store = build_object_store(settings)
    texts = {name: text_layer(store.get_bytes(f"input/{name}")) for name in available}
    document_words = {name: content_words(text) for name, text in texts.items()}
    scope = set(available if only_documents is None else only_documents) & set(available)
    asked = [question for question in questions if question.document in scope]
    answerable = [question for question in asked if occurs_in(question.answer_words, document_words[question.document])]
    depth = max(k, MRR_DEPTH)
    report = EvaluationReport(
        k=k,
        settings_summary={
            "vector_index": settings.vector_index,
            "embedder": settings.embedder,
            "search_text_weight": settings.search_text_weight,
            "chunk_target_chars": settings.chunk_target_chars,
            "chunk_max_tokens": settings.chunk_max_tokens,
        },
        documents=sorted(scope),
        missing=missing,
        questions=answerable,
        unanswerable=[question for question in asked if question not in answerable],
    )
    for retriever in (IndexRetriever(settings), BM25WindowBaseline(texts)):
        report.systems.append(run_system(retriever, answerable, depth))
    return report
