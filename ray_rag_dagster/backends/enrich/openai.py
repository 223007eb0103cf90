"""The OpenAI enricher: a chat model with structured output annotates each chunk; PII is redacted locally first.

:func:`~ray_rag_dagster.backends.enrich.pii.redact_pii` runs before any text leaves the machine and again
on the reply; a reply that changes the text beyond redactions is rejected (:func:`apply_model_redactions`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

import pydantic

from ray_rag_dagster.backends.enrich.base import KEY_PHRASES, REDACTED, Enricher, Enrichment, dedupe
from ray_rag_dagster.backends.enrich.local import LocalEnricher
from ray_rag_dagster.backends.enrich.pii import redact_pii

if TYPE_CHECKING:
    from ray_rag_dagster.backends.openai_client import RetryPolicy
    from ray_rag_dagster.settings import Settings

_log = logging.getLogger(__name__)

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
    kept = dedupe(kept)
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
