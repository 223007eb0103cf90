"""Chunk enrichment: redact PII, then pull entities and key phrases out of the redacted text.

Redaction runs first and everything else reads only its output, so no entity, phrase or embedding can
carry an email, phone number, SSN or labelled date of birth. :func:`redact_pii` is public so that a
remote (LLM) enricher can apply it before any text leaves the machine.

The local implementation is dictionary- and rule-based (phonenumbers, drug_named_entity_recognition,
YAKE): no model weights, no network, deterministic, and fast enough to run on every chunk.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import phonenumbers
import pydantic

if TYPE_CHECKING:
    from ray_rag_dagster.backends.openai_client import RetryPolicy
    from ray_rag_dagster.settings import Settings

_log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
KEY_PHRASES = 5


class Enrichment(pydantic.BaseModel):
    """What enrichment adds to one chunk; ``redacted_text`` replaces the chunk text downstream."""

    redacted_text: str
    redactions: dict[str, int] = pydantic.Field(
        description="Count per PII kind actually found (email, phone, ssn, dob); absent kinds are omitted."
    )
    entities: dict[str, list[str]] = pydantic.Field(
        description="Keys exactly people, organizations, medications; deduplicated, in order of appearance."
    )
    key_phrases: list[str]
    enricher: str
    # Billed usage of a remote enricher for this chunk (all attempts); 0 / None for local enrichment.
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None


class Enricher(abc.ABC):
    """Seam for enrichment backends.

    It takes a batch so that a remote implementation can spend one request on several chunks; the
    result has one :class:`Enrichment` per input text, in order.
    """

    name: str

    @abc.abstractmethod
    def enrich(self, texts: list[str]) -> list[Enrichment]: ...


# --- PII redaction -------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_DASH = "[-\u2010\u2011\u2012\u2013]"
# Area 000 / group 00 / serial 0000 are never issued, so those shapes are left alone.
_SSN_DIGITS = r"(?!000|666)\d{3}(?P<sep>%s)(?!00)\d{2}(?P=sep)(?!0000)\d{4}(?![\w\-/]|\.\d)"
_SSN = re.compile(r"(?<![\w.\-/])" + _SSN_DIGITS % _DASH)
# Space-separated digits ("240 80 2024") are common in flattened tables: an SSN only when labelled.
_SSN_SPACED = re.compile(
    r"(?P<label>\b(?:SSN|SS#|Social Security(?: [Nn]umber| [Nn]o\.?)?)\s*[:#]?\s*)" + _SSN_DIGITS % " "
)
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}"
    r"|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}"
    rf"|\d{{1,2}}[ \-]{_MONTH}[ \-,]*\d{{4}}"
    rf"|{_MONTH} \d{{1,2}},? \d{{4}})"
)
# Only a date that is labelled as a birth date is PII; visit and approval dates stay.
_DOB = re.compile(
    rf"(?P<label>\b(?:DOB|D\.O\.B\.?|[Dd]ate of [Bb]irth|[Bb]irth ?[Dd]ate|[Bb]orn(?: on)?)\s*[:#-]?\s*)"
    rf"{_DATE}"
)
# A North American number written in 3-3-4 groups, e.g. (555) 201-4477, even with a fictional area code.
# Groups split only by spaces ("240 238 1500") are as likely a flattened table row, so they need a label.
_NANP_GROUPED = re.compile(
    r"(?:1[\s.-]?)?(?:\([2-9]\d\d\)\s?[2-9]\d\d[.\s-]|[2-9]\d\d(?P<sep>[.-])[2-9]\d\d(?P=sep))\d{4}"
)
_NANP_SPACED = re.compile(r"(?:1 )?[2-9]\d\d [2-9]\d\d \d{4}")
_PHONE_LABEL = re.compile(r"(?:phone|tel|telephone|fax|mobile|cell|call|contact)\b\W{0,4}$", re.IGNORECASE)
_SEVEN_DIGITS = re.compile(r"(?:\d\D{0,3}){7}")


def _redact_phones(segment: str) -> tuple[str, int]:
    if not _SEVEN_DIGITS.search(segment):
        return segment, 0
    spans = []
    for match in phonenumbers.PhoneNumberMatcher(segment, "US", leniency=phonenumbers.Leniency.POSSIBLE):
        # POSSIBLE also finds digit runs that merely parse as numbers ("2017-0045-12" is a valid US
        # number): keep international "+" numbers and national ones grouped the way phones are written.
        raw = match.raw_string
        if (
            raw.startswith("+")
            or _NANP_GROUPED.fullmatch(raw)
            or (_NANP_SPACED.fullmatch(raw) and _PHONE_LABEL.search(segment[max(0, match.start - 16) : match.start]))
        ):
            spans.append((match.start, match.end))
    for start, end in reversed(spans):
        segment = segment[:start] + REDACTED + segment[end:]
    return segment, len(spans)


def redact_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace emails, SSNs, labelled dates of birth and phone numbers with ``[REDACTED]``.

    Each ``|``-separated cell is redacted on its own, so a match never spans table cells and Markdown
    table structure survives byte for byte outside the replaced values.
    """
    counts: dict[str, int] = {}
    cells = text.split("|")
    for i, cell in enumerate(cells):
        cell, n_email = _EMAIL.subn(REDACTED, cell)
        cell, n_ssn = _SSN.subn(REDACTED, cell)
        cell, n_ssn_spaced = _SSN_SPACED.subn(lambda m: m.group("label") + REDACTED, cell)
        cell, n_dob = _DOB.subn(lambda m: m.group("label") + REDACTED, cell)
        cell, n_phone = _redact_phones(cell)
        for kind, n in (("email", n_email), ("ssn", n_ssn + n_ssn_spaced), ("dob", n_dob), ("phone", n_phone)):
            if n:
                counts[kind] = counts.get(kind, 0) + n
        cells[i] = cell
    return "|".join(cells), counts


# --- Entities ------------------------------------------------------------------------------------

_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_INITIAL = r"[A-Z]\."
_FULL_NAME = rf"{_NAME_WORD}(?:[ \t]+(?:{_INITIAL}|{_NAME_WORD})){{1,2}}"
_HONORIFIC = re.compile(
    rf"\b(?:Dr|Prof|Professor|Mr|Mrs|Ms)\.?[ \t]+(?P<name>{_NAME_WORD}(?:[ \t]+(?:{_INITIAL}|{_NAME_WORD})){{0,2}})"
)
_CREDENTIAL = re.compile(
    rf"(?P<name>{_FULL_NAME}),?[ \t]+(?:MD|M\.D\.|PhD|Ph\.D\.|DO|PharmD|MBBS|MBChB|RN|MPH|MSc|DrPH|FRCP|FACP)\b"
)
_ROLE = re.compile(
    r"\b(?:Principal Investigator|Sub-?[Ii]nvestigator|Investigator|Medical Monitor|Study Director|"
    r"Study Physician|Study Coordinator|Site Coordinator|Coordinator|Sponsor Contact|Contact Person|"
    r"Responsible Physician|Signatory)[ \t]*:[ \t]*(?:(?:Dr|Prof)\.?[ \t]+)?"
    rf"(?P<name>{_FULL_NAME})"
)
# Capitalised words that follow honorific-like patterns but are not names (e.g. "Medical Monitor, MD").
_NOT_NAME_WORDS = frozenset(
    "The This That Study Site Sponsor Medical Monitor Clinical Investigator Principal Director Officer "
    "Coordinator Contact Name Signature Date Protocol Page Table Section Visit Day Phone Email Fax "
    "Department University Hospital Institute Center Centre Clinic Research Trial Drug Dose".split()
)

_ORG_SUFFIX = (
    r"(?:Inc\.?|Incorporated|LLC|L\.L\.C\.|Ltd\.?|Limited|GmbH|AG|A/S|S\.A\.|plc|PLC|N\.V\.|K\.K\.?|Co\.|"
    r"Corp\.?|Corporation|Company|Pharmaceuticals?|Pharma|Therapeutics|Biosciences|Biotech|Biologics|"
    r"Laboratories|Labs|University|Hospital|Institutes?|Foundation|Medical Center|Health System|Clinic|"
    r"College|Agency|Association|Society|Organi[sz]ation)"
)
_ORG_WORD = rf"(?!{_ORG_SUFFIX}(?![A-Za-z]))(?:[A-Z][A-Za-z'\u2019\-]*|[A-Z]{{2,}})"
# Up to five capitalised words ending in a legal or institutional suffix ("Eli Lilly and Company",
# "Examplar Pharmaceuticals, Inc.", "National Institute on Aging"). A line break is crossed only after a
# connector or before the suffix, so a heading on the previous line is not pulled in.
_ORG_SUFFIXED = re.compile(
    rf"\b(?P<org>{_ORG_WORD}(?:[ \t]+(?:(?:and|&|of|for|the)\s+)?{_ORG_WORD}){{0,4}}"
    rf"(?:,?[ \t]*\n?[ \t]*|[ \t]+(?:and|&)\s+)(?<=[\s,]){_ORG_SUFFIX}"
    rf"(?:,?[ \t]+(?:Co\.,?[ \t]+Ltd\.?|Inc\.?|LLC|Ltd\.?))?"
    rf"(?:[ \t]+(?:of|on|for)[ \t]+(?:the[ \t]+)?{_ORG_WORD}(?:[ \t]+{_ORG_WORD}){{0,2}})?)(?![A-Za-z])"
)
_ORG_PREFIXED = re.compile(
    rf"\b(?P<org>(?:University|Institute|Hospital|College)[ \t]+of[ \t]+{_ORG_WORD}(?:[ \t]+{_ORG_WORD}){{0,2}})"
)
_ORG_LEADING_NOISE = frozenset(
    "The A An This That These Each Any Our Your Their Its Sponsor Participating Local Investigational "
    "Study Site Note Confidential Approved By And Or Of For In At To".split()
)
_ORG_GENERIC_SUFFIX_ONLY = re.compile(rf"^{_ORG_SUFFIX}$")

# Dictionary entries that are lab analytes or endogenous substances in a protocol, not medications.
_NOT_MEDICATIONS = frozenset(
    {"alkaline phosphatase", "uric acid", "thyrotropin", "follicle stimulating hormone", "histamine"}
)
_NOT_MEDICATION_TOKENS = frozenset({"vitae"})  # "curriculum vitae" -> tocopherols
_DRUG_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*")


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.casefold()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _is_name(name: str) -> bool:
    return not any(word in _NOT_NAME_WORDS for word in name.split())


def find_people(text: str) -> list[str]:
    """Names introduced by an honorific, followed by a credential, or given for a named study role."""
    found: list[tuple[int, str]] = []
    for pattern in (_HONORIFIC, _CREDENTIAL, _ROLE):
        for m in pattern.finditer(text):
            name = " ".join(m.group("name").split())
            if _is_name(name):
                found.append((m.start("name"), name))
    found.sort()
    # "Dr. Jane Doe" and "Jane Doe, MD" are one person; a bare surname after "Dr." folds into a full name.
    names = _dedupe([name for _, name in found])
    return [n for n in names if not any(o != n and o.endswith(" " + n) for o in names)]


def _clean_org(raw: str) -> str | None:
    words = " ".join(raw.split()).split(" ")
    while words and words[0].rstrip(",") in _ORG_LEADING_NOISE:
        words.pop(0)
    org = " ".join(words).strip(" ,")
    if not org or _ORG_GENERIC_SUFFIX_ONLY.match(org) or " " not in org:
        return None
    return org


def find_organizations(text: str) -> list[str]:
    """Organisations recognised by a legal/institutional suffix or a "University of X" form."""
    found: list[tuple[int, str]] = []
    for pattern in (_ORG_SUFFIXED, _ORG_PREFIXED):
        for m in pattern.finditer(text):
            org = _clean_org(m.group("org"))
            if org:
                found.append((m.start("org"), org))
    found.sort()
    orgs = _dedupe([org for _, org in found])
    # Overlapping matches ("Lilly and Company" inside "Eli Lilly and Company"): keep the longest.
    return [o for o in orgs if not any(o != other and o in other for other in orgs)]


@functools.cache
def _drug_finder() -> Callable[..., list[tuple[dict[str, Any], int, int]]]:
    """Import once per process: loading the drug dictionary takes about a second."""
    from drug_named_entity_recognition import find_drugs

    return find_drugs


def find_medications(text: str) -> list[str]:
    """Lower-case canonical drug names from the DrugBank/MeSH dictionary, in order of appearance.

    Only entries with a DrugBank, MedlinePlus or NHS reference count: that drops drug classes ("Hypoglycemic
    Agents"), enzymes and antibodies the dictionary also holds.
    """
    tokens = _DRUG_TOKEN.findall(text)
    matches = sorted(_drug_finder()(tokens), key=lambda m: m[1])
    names = []
    for data, start, end in matches:
        if not (data.get("drugbank_id") or data.get("medline_plus_id") or data.get("nhs_url")):
            continue
        if any(t.lower() in _NOT_MEDICATION_TOKENS for t in tokens[start:end]):
            continue
        name = re.sub(r"\s*\(.*\)$", "", str(data.get("name") or " ".join(tokens[start:end]))).lower()
        if name not in _NOT_MEDICATIONS:
            names.append(name)
    return _dedupe(names)


# --- Key phrases ---------------------------------------------------------------------------------

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


# --- Local backend -------------------------------------------------------------------------------


class LocalEnricher(Enricher):
    """Rule- and dictionary-based enrichment in process; stateless, so it pickles to Ray workers as is."""

    name = "local"

    def enrich(self, texts: list[str]) -> list[Enrichment]:
        return [self._enrich_one(text) for text in texts]

    def _enrich_one(self, text: str) -> Enrichment:
        redacted, counts = redact_pii(text)
        return Enrichment(
            redacted_text=redacted,
            redactions=counts,
            entities={
                "people": find_people(redacted),
                "organizations": find_organizations(redacted),
                "medications": find_medications(redacted),
            },
            key_phrases=find_key_phrases(redacted),
            enricher=self.name,
        )


# --- OpenAI backend ------------------------------------------------------------------------------

_LLM_INSTRUCTIONS = f"""You annotate one chunk of a clinical-trial document. The user message is the chunk text \
(Markdown); some personal data in it is already replaced with {REDACTED}.
Return JSON with:
- redacted_text: the chunk text exactly as given, except that any remaining personal data (email addresses, \
phone or fax numbers, social security or other national ID numbers, dates of birth, street addresses, \
medical record numbers) is replaced with {REDACTED}. Change nothing else: keep wording, Markdown and existing \
{REDACTED} markers. Names of people, organizations and medications are not redacted.
- people: names of people mentioned, as written.
- organizations: companies, universities, hospitals, agencies and other institutions, as written.
- medications: drugs mentioned, as lower-case generic names.
- key_phrases: up to {KEY_PHRASES} short phrases saying what the chunk is about.
Lists hold each item once, in order of appearance, and are empty when nothing fits."""

# A span the model redacts is personal data, not a paragraph: a longer gap means it dropped content.
_MAX_REDACTED_SPAN = 120


class LLMEnrichment(pydantic.BaseModel):
    """The structured reply the model must give (strict JSON schema)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    redacted_text: str
    people: list[str]
    organizations: list[str]
    medications: list[str]
    key_phrases: list[str]


class InvalidReply(ValueError):
    """The model's reply is not usable (not JSON, wrong shape, cut short, or text changed beyond redaction)."""


@dataclasses.dataclass(frozen=True)
class _Attempt:
    reply: LLMEnrichment | None  # None: the reply was invalid, for ``problem``
    problem: str
    input_tokens: int
    output_tokens: int


def _words_pattern(piece: str, *, at_end: bool = False) -> re.Pattern[str]:
    """``piece`` with any whitespace run matching any whitespace run (a blank piece is one such run)."""
    body = r"\s+".join(re.escape(word) for word in piece.split()) or (r"\s+" if piece else "")
    return re.compile(body + (r"\s*\Z" if at_end else ""))


def apply_model_redactions(sent: str, reply: str) -> tuple[str, int] | None:
    """Carry the model's redactions over to ``sent``; None if the reply changed anything else.

    The reply must be ``sent`` with short spans replaced by ``[REDACTED]``: each piece between markers
    is found in order (whitespace may differ), the first at the start and the last at the end. The result
    is ``sent`` itself with those spans replaced, so its layout (Markdown tables, line breaks) is the
    original's whatever the model did to whitespace. Returns the text and the number of new redactions.
    """
    first, *rest = reply.split(REDACTED)
    head = re.compile(r"\s*" + _words_pattern(first).pattern).match(sent)
    if head is None or (not rest and not re.fullmatch(r"\s*", sent[head.end() :])):
        return None
    parts, position, added = [sent[: head.end()]], head.end(), 0
    for index, piece in enumerate(rest):
        last = index == len(rest) - 1
        found = _words_pattern(piece, at_end=last).search(sent, position + 1)  # every marker replaces something
        if found is None:
            return None
        gap = sent[position : found.start()]
        if len(gap.strip()) > _MAX_REDACTED_SPAN:
            return None  # the model dropped text, not a personal detail
        core = gap.strip()
        if core and core != REDACTED:
            lead, trail = gap[: len(gap) - len(gap.lstrip())], gap[len(gap.rstrip()) :]
            parts.append(f"{lead}{REDACTED}{trail}")
            added += 1
        else:
            parts.append(gap)
        parts.append(sent[found.start() : found.end()])
        position = found.end()
    parts.append(sent[position:])
    return "".join(parts), added


def _clean_items(items: list[str], *, lower: bool = False, limit: int | None = None) -> list[str]:
    """Strip, drop any item that carries PII (the reply is checked like the input), dedupe."""
    kept = []
    for item in items:
        item = " ".join(item.split())
        item = item.lower() if lower else item
        if item and REDACTED not in item and not redact_pii(item)[1]:
            kept.append(item)
    kept = _dedupe(kept)
    return kept[:limit] if limit is not None else kept


def _parse_reply(sent: str, choice: Any) -> LLMEnrichment:
    """The validated reply of one chat choice, or InvalidReply saying why not (never quoting the text)."""
    if choice.finish_reason != "stop" or choice.message.refusal or not choice.message.content:
        raise InvalidReply(f"finish_reason={choice.finish_reason}, refusal={bool(choice.message.refusal)}")
    try:
        reply = LLMEnrichment.model_validate_json(choice.message.content)
    except pydantic.ValidationError as exc:
        raise InvalidReply(f"{exc.error_count()} schema error(s), first: {exc.errors()[0]['type']}") from None
    if apply_model_redactions(sent, reply.redacted_text) is None:
        raise InvalidReply("redacted_text differs from the input beyond redactions")
    return reply


class OpenAIEnricher(Enricher):
    """A chat model with structured output (strict JSON schema), one request per chunk, a few in parallel.

    :func:`redact_pii` runs on the text *before* it is sent, so the rule-detected PII never leaves the
    machine, and again on the reply (text, entities and phrases). The model may redact more (addresses,
    record numbers: counted as ``llm``) but must return the text otherwise unchanged; a reply that is not
    valid JSON of the schema, is cut short, or changes the text is asked for again, up to
    ``invalid_reply_attempts`` times, after which the chunk is enriched locally (``enricher="local-fallback"``).
    Token usage is billed per chunk over all its attempts. API failures (bad key, retries spent) raise.
    """

    name = "openai"

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = 4,
        invalid_reply_attempts: int = 3,
        retry: RetryPolicy | None = None,
    ) -> None:
        from ray_rag_dagster.backends.openai_client import build_openai_client, retry_policy

        self.model = settings.openai_enrich_model
        self.client = build_openai_client(settings)
        self.retry = retry or retry_policy(settings)
        self.concurrency = concurrency
        self.invalid_reply_attempts = invalid_reply_attempts
        self.local = LocalEnricher()
        self.response_format = {
            "type": "json_schema",
            "json_schema": {"name": "chunk_enrichment", "strict": True, "schema": LLMEnrichment.model_json_schema()},
        }

    def enrich(self, texts: list[str]) -> list[Enrichment]:
        from concurrent.futures import ThreadPoolExecutor

        if len(texts) <= 1 or self.concurrency <= 1:
            return [self._enrich_one(text) for text in texts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(texts))) as pool:
            return list(pool.map(self._enrich_one, texts))

    def _ask(self, sent: str) -> _Attempt:
        """One request (API errors retried by the shared policy); its reply if valid, and its usage."""
        from ray_rag_dagster.backends.openai_client import call_with_retries

        completion = call_with_retries(
            lambda: self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": _LLM_INSTRUCTIONS}, {"role": "user", "content": sent}],
                response_format=self.response_format,  # type: ignore[arg-type]
                temperature=0,
            ),
            self.retry,
            what=f"chat completion ({self.model})",
        )
        usage = completion.usage
        input_tokens, output_tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        try:
            reply = _parse_reply(sent, completion.choices[0])
        except InvalidReply as exc:
            return _Attempt(None, str(exc), input_tokens, output_tokens)
        return _Attempt(reply, "", input_tokens, output_tokens)

    def _enrich_one(self, text: str) -> Enrichment:
        sent, counts = redact_pii(text)
        input_tokens = output_tokens = 0
        for attempt in range(1, self.invalid_reply_attempts + 1):
            result = self._ask(sent)
            input_tokens, output_tokens = input_tokens + result.input_tokens, output_tokens + result.output_tokens
            reply = result.reply
            if reply is None:
                _log.warning("enricher %s: invalid reply (attempt %d/%d): %s",
                             self.model, attempt, self.invalid_reply_attempts, result.problem)
                continue
            applied = apply_model_redactions(sent, reply.redacted_text)
            assert applied is not None  # checked by _parse_reply
            redacted, again = redact_pii(applied[0])
            for kind, n in [*again.items(), ("llm", applied[1])]:
                if n > 0:
                    counts[kind] = counts.get(kind, 0) + n
            return Enrichment(
                redacted_text=redacted,
                redactions=counts,
                entities={
                    "people": _clean_items(reply.people),
                    "organizations": _clean_items(reply.organizations),
                    "medications": _clean_items(reply.medications, lower=True),
                },
                key_phrases=_clean_items(reply.key_phrases, limit=KEY_PHRASES),
                enricher=self.name,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                model=self.model,
            )
        fallback = self.local.enrich([text])[0]
        return fallback.model_copy(
            update={
                "enricher": "local-fallback",
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "model": self.model,
            }
        )
