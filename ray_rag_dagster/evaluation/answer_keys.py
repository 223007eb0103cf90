"""Questions from the human-written USDM answer keys.

**Answer keys.** ``shared/data/groundtruth/clinical/*.json`` are CDISC USDM v4 study definitions written by
people from the three clinical protocols. Every eligibility criterion, objective and endpoint in them is an
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

**Written questions** (``written_questions.json``, kind ``written``): written by hand, before any search was
run on them, from the USDM fields the generated questions do not use (phase, design, arms, interventions,
population, visit and assessment timing, ...), each with a verbatim passage of the PDF as its answer and the
USDM field it came from. They are held out: no ranking rule was tuned on them.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray_rag_dagster.evaluation.relevance import answer_stretches, content_words

# The answer keys and the protocol each one was written from (the PDF's file name in the inbox).
ANSWER_KEY_SOURCES: dict[str, str] = {
    "ddf-sdr-api-study-cdisc-pilot-sample-usdm-v4.json": "CDISC_Pilot_Study.pdf",
    "ddf-sdr-api-study-EliLilly-Diabetes-sample-usdm-v4.json": "EliLilly_NCT03421379_Diabetes.pdf",
    "ddf-sdr-api-study-BP30037-sample-usdm-v4.json": "Roche_BP30037_V3.pdf",
}

QUESTION_MAX_WORDS = 20
MIN_ANSWER_CONTENT_WORDS = 3
_TO_BE_DETERMINED = re.compile(r"to be determined", re.IGNORECASE)


def default_answer_keys_dir() -> Path:
    """``shared/data/groundtruth/clinical`` beside the repository (where CI and developers have it)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "groundtruth" / "clinical"


@dataclass(frozen=True)
class Question:
    id: str  # "<pdf>#<USDM item name>/<kind>", stable across runs
    document: str  # the PDF's file name
    kind: str  # criterion-text, criterion-label, objective-text, objective-label, endpoint-text, written
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

    seen: Counter[str] = Counter()

    def add(name: str, kind: str, text: str, answer: str) -> None:
        question_id = f"{document}#{name}/{kind}"
        seen[question_id] += 1
        if seen[question_id] > 1:  # names repeat across objectives in some keys ("Endpoint 1" under each)
            question_id = f"{question_id}#{seen[question_id]}"
        questions.append(Question(question_id, document, kind, text, answer))

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
                # Some keys (Roche BP30037) write the objective in ``description`` and leave ``text`` empty.
                text = objective.get("text") or objective.get("description") or ""
                answer = usdm_text.plain(text, objective.get("dictionaryId"))
                level = objective["level"]["decode"]
                if _usable(answer):
                    add(objective["name"], "objective-text", _verbatim_question(answer), answer)
                    if levels[level] == 1:
                        add(objective["name"], "objective-label", f"What is the {level.lower()} of {study}?", answer)
                    elif objective.get("text") and objective.get("description"):
                        label = f"{study} {level.lower()}: {objective['description']}"
                        add(objective["name"], "objective-label", label, answer)
                for endpoint in objective.get("endpoints", []):
                    text = endpoint.get("text") or endpoint.get("description") or ""
                    answer = usdm_text.plain(text, endpoint.get("dictionaryId"))
                    if _usable(answer):
                        add(endpoint["name"], "endpoint-text", _verbatim_question(answer), answer)
    return questions


WRITTEN_QUESTIONS = Path(__file__).with_name("written_questions.json")


def written_questions(path: Path = WRITTEN_QUESTIONS) -> list[Question]:
    """The hand-written questions (see the module doc), in the file's order."""
    entries = json.loads(path.read_text(encoding="utf-8"))["questions"]
    return [Question(entry["id"], entry["document"], "written", entry["question"], entry["answer"]) for entry in entries]


def load_questions(answer_keys_dir: Path) -> list[Question]:
    """Questions from every known answer key, then the written ones; a missing key file is an error naming it."""
    missing = [name for name in ANSWER_KEY_SOURCES if not (answer_keys_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"answer keys not found in {answer_keys_dir}: {', '.join(missing)}")
    questions: list[Question] = []
    for name, document in ANSWER_KEY_SOURCES.items():
        questions.extend(questions_from_usdm(json.loads((answer_keys_dir / name).read_text()), document))
    return questions + written_questions()
