"""The enrichment seam: :class:`Enricher` and what it returns per chunk, :class:`Enrichment`."""

from __future__ import annotations

import abc

import pydantic

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


def dedupe(items: list[str]) -> list[str]:
    """Items in order of first appearance, compared case-insensitively."""
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.casefold()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
