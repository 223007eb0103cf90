"""Retrieval evaluation: questions from human-written USDM answer keys, scored on the index and on a baseline.

**Answer keys.** ``shared/data/groundtruth/clinical/*.json`` are CDISC USDM v4 study definitions written by
people from the two clinical protocols. Every eligibility criterion, objective and endpoint in them is an
*answer passage*: its text with the USDM markup removed (HTML stripped, entities unescaped, ``<usdm:tag>``
parameters resolved through the study's syntax-template dictionaries, e.g. ``min_age`` → ``50``).

**Questions** (deterministic: JSON order, no randomness). Each passage gives one or two questions:

- ``*-text``: the passage's first sentence, cut to at most 20 words (verbatim wording, often partial);
- ``criterion-label``: ``"<study> <inclusion|exclusion> criterion: <label>"`` from the criterion's
  human-written ``label`` (or ``description``), e.g. "LZZT inclusion criterion: MMSE Score",
  "LY900018 exclusion criterion: Hep C";
- ``objective-label``: "What is the primary objective of LY900018?" when the design has one objective of
  that level, else ``"<study> <level>: <description>"`` when it has a description ("LZZT secondary
  objective: Safety").

``<study>`` is the study's acronym (or its name when it has none): short questions need it to say which
protocol they are about, as a person asking them would.

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

import functools
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
from bm25s.stopwords import STOPWORDS_EN_PLUS
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


# --- Questions from the USDM answer keys --------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str  # "<pdf>#<USDM item name>/<kind>", stable across runs
    document: str  # the PDF's file name
    kind: str  # criterion-text, criterion-label, objective-text, objective-label, endpoint-text
    text: str  # what is asked
    answer: str  # the passage it came from

    @functools.cached_property
    def answer_words(self) -> list[str]:
        return content_words(self.answer)

    @functools.cached_property
    def stretches(self) -> list[frozenset[str]]:
        return answer_stretches(self.answer_words)


_USDM_TAG = re.compile(r'<usdm:tag\s+name="(?P<name>[^"]+)"\s*/>')
_USDM_REF = re.compile(r'id="(?P<id>[^"]+)"\s+attribute="(?P<attribute>[^"]+)"')
_HTML_TAG = re.compile(r"<[^>]+>")
_SENTENCE_END = re.compile(r"(?<=[.;?!])\s+")
_CRITERION_WORD = re.compile(r"\s*\bcrit\w*\s*$", re.IGNORECASE)  # "HIV criterion", "A1c critierion"


def _objects_by_id(node: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("id"), str):
                found.setdefault(item["id"], item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class _UsdmText:
    """Turns a USDM text field into plain text, resolving its parameter tags."""

    def __init__(self, version: dict[str, Any], usdm: dict[str, Any]) -> None:
        self.objects = _objects_by_id(usdm)
        self.references = {
            dictionary["id"]: {entry["tag"]: entry["reference"] for entry in dictionary.get("parameterMaps", [])}
            for dictionary in version.get("dictionaries", [])
        }

    def _tag_value(self, dictionary_id: str | None, tag: str) -> str:
        reference = _USDM_REF.search(self.references.get(dictionary_id or "", {}).get(tag, ""))
        if reference is None:
            return ""
        value = self.objects.get(reference["id"], {}).get(reference["attribute"], "")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    def plain(self, text: str | None, dictionary_id: str | None = None) -> str:
        text = _USDM_TAG.sub(lambda match: self._tag_value(dictionary_id, match["name"]), text or "")
        text = html.unescape(_HTML_TAG.sub(" ", text))
        return " ".join(text.split())


def _verbatim_question(answer: str) -> str:
    first_sentence = _SENTENCE_END.split(answer, maxsplit=1)[0]
    return " ".join(first_sentence.split()[:QUESTION_MAX_WORDS])


def _usable(answer: str) -> bool:
    return not _TO_BE_DETERMINED.search(answer) and len(content_words(answer)) >= MIN_ANSWER_CONTENT_WORDS


def questions_from_usdm(usdm: dict[str, Any], document: str) -> list[Question]:
    """Questions about one protocol from its USDM answer key, in the key's own order (see the module doc)."""
    questions: list[Question] = []

    def add(name: str, kind: str, text: str, answer: str) -> None:
        questions.append(Question(f"{document}#{name}/{kind}", document, kind, text, answer))

    for version in usdm["study"]["versions"]:
        usdm_text = _UsdmText(version, usdm)
        acronyms = [title["text"] for title in version.get("titles", []) if title["type"]["decode"] == "Study Acronym"]
        study = acronyms[0] if acronyms else usdm["study"]["name"]
        items = {item["id"]: item for item in version.get("eligibilityCriterionItems", [])}
        for design in version.get("studyDesigns", []):
            for criterion in design.get("eligibilityCriteria", []):
                item = items[criterion["criterionItemId"]]
                answer = usdm_text.plain(item["text"], item.get("dictionaryId"))
                if not _usable(answer):
                    continue
                add(criterion["name"], "criterion-text", _verbatim_question(answer), answer)
                label = _CRITERION_WORD.sub("", criterion.get("label") or criterion.get("description") or "")
                if label:
                    category = "inclusion" if "inclusion" in criterion["category"]["decode"].lower() else "exclusion"
                    add(criterion["name"], "criterion-label", f"{study} {category} criterion: {label}", answer)
            objectives = design.get("objectives", [])
            levels = Counter(objective["level"]["decode"] for objective in objectives)
            for objective in objectives:
                answer = usdm_text.plain(objective["text"], objective.get("dictionaryId"))
                level = objective["level"]["decode"]
                if _usable(answer):
                    add(objective["name"], "objective-text", _verbatim_question(answer), answer)
                    if levels[level] == 1:
                        add(objective["name"], "objective-label", f"What is the {level.lower()} of {study}?", answer)
                    elif objective.get("description"):
                        label = f"{study} {level.lower()}: {objective['description']}"
                        add(objective["name"], "objective-label", label, answer)
                for endpoint in objective.get("endpoints", []):
                    answer = usdm_text.plain(endpoint["text"], endpoint.get("dictionaryId"))
                    if _usable(answer):
                        add(endpoint["name"], "endpoint-text", _verbatim_question(answer), answer)
    return questions


def load_questions(answer_keys_dir: Path) -> list[Question]:
    """Questions from every known answer key; a missing key file is an error naming it."""
    missing = [name for name in ANSWER_KEY_SOURCES if not (answer_keys_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"answer keys not found in {answer_keys_dir}: {', '.join(missing)}")
    questions: list[Question] = []
    for name, document in ANSWER_KEY_SOURCES.items():
        questions.extend(questions_from_usdm(json.loads((answer_keys_dir / name).read_text()), document))
    return questions


# --- Retrievers ---------------------------------------------------------------------------------------


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


# --- Metrics ------------------------------------------------------------------------------------------


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


# --- One evaluation run -------------------------------------------------------------------------------


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
        },
        documents=sorted(scope),
        missing=missing,
        questions=answerable,
        unanswerable=[question for question in asked if question not in answerable],
    )
    for retriever in (IndexRetriever(settings), BM25WindowBaseline(texts)):
        report.systems.append(run_system(retriever, answerable, depth))
    return report


# --- CLI ----------------------------------------------------------------------------------------------


def print_report(report: EvaluationReport, console: Console) -> None:
    pipeline, baseline = (run.name for run in report.systems)
    weight = report.settings_summary["search_text_weight"]
    table = Table(
        title=f"Retrieval: recall@{report.k} and MRR@{MRR_DEPTH}, pipeline ({report.settings_summary['vector_index']}, "
        f"text weight {weight}) vs BM25 over {BASELINE_WINDOW_CHARS}-character windows"
    )
    table.add_column("questions", no_wrap=True)
    table.add_column("n", justify="right")
    for system in ("pipeline", "BM25"):
        table.add_column(f"{system} R@{report.k}", justify="right")
        table.add_column(f"{system} MRR", justify="right")
    for group, questions in report.groups():
        ours, theirs = report.scores(pipeline, questions), report.scores(baseline, questions)

        def cell(value: float, other: float) -> str:
            return f"[green]{value:.3f}[/]" if value > other else f"{value:.3f}"

        table.add_row(
            group, str(ours.questions),
            cell(ours.recall, theirs.recall), cell(ours.mrr, theirs.mrr),
            cell(theirs.recall, ours.recall), cell(theirs.mrr, ours.mrr),
            end_section=group == "overall" or group == report.documents[-1],
        )
    console.print(table)
    if report.unanswerable:
        console.print(f"{len(report.unanswerable)} questions left out: their passage is not in the PDF's text layer.")


def evaluate(
    k: Annotated[int, typer.Option("-k", help="Recall cut-off: recall@k.")] = RECALL_K,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    answer_keys: Annotated[
        Path | None, typer.Option(help="Folder of the USDM answer keys (default: shared/data/groundtruth/clinical).")
    ] = None,
) -> None:
    """Retrieval quality on the clinical protocols' answer keys: the index vs a BM25 baseline."""
    console = Console(stderr=as_json)
    try:
        report = run_evaluation(Settings(), answer_keys, k=k)
    except (DocumentsNotIndexed, FileNotFoundError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    for name, why in report.missing.items():
        console.print(f"[yellow]{name} not evaluated: {why} (ray-rag ingest ../shared/data/pdfs/clinical/{name})[/]")
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, console)
