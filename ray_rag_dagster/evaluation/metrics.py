"""Scores of a retriever on the questions.

**Metrics.** recall@k (k=5 by default): the share of questions with a relevant passage in the top k (one
answer passage per question, so this is the hit rate); MRR@10: mean of 1/rank of the first relevant passage
in the top 10 (0 when none). Reported per document, per question kind and overall.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ray_rag_dagster.evaluation.answer_keys import Question
from ray_rag_dagster.evaluation.relevance import passage_matches
from ray_rag_dagster.evaluation.retrievers import Passage, Retriever

RECALL_K = 5
MRR_DEPTH = 10


def first_relevant_rank(question: Question, passages: Sequence[Passage]) -> int | None:
    for rank, passage in enumerate(passages, start=1):
        if passage.document == question.document and passage_matches(question.stretches, passage.text):
            return rank
    return None


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose answer is in the top ``k`` (one answer per question: the hit rate)."""
    return sum(rank is not None and rank <= k for rank in ranks) / len(ranks) if ranks else 0.0


def mean_reciprocal_rank(ranks: Sequence[int | None], depth: int = MRR_DEPTH) -> float:
    return sum(1.0 / rank for rank in ranks if rank is not None and rank <= depth) / len(ranks) if ranks else 0.0


@dataclass(frozen=True)
class Scores:
    questions: int
    recall: float  # recall@k
    mrr: float  # MRR@MRR_DEPTH


@dataclass
class SystemRun:
    name: str
    ranks: dict[str, int | None]  # question id → rank of the first relevant passage

    def scores(self, questions: Iterable[Question], k: int) -> Scores:
        ranks = [self.ranks[question.id] for question in questions]
        return Scores(len(ranks), round(recall_at(ranks, k), 4), round(mean_reciprocal_rank(ranks), 4))


def run_system(retriever: Retriever, questions: Sequence[Question], depth: int) -> SystemRun:
    return SystemRun(
        retriever.name,
        {
            question.id: first_relevant_rank(question, retriever.retrieve(question.text, depth))
            for question in questions
        },
    )
