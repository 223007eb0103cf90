"""The local enricher: redaction, then rule- and dictionary-based entities and YAKE key phrases, in process."""

from __future__ import annotations

from ray_rag_dagster.backends.enrich.base import Enricher, Enrichment
from ray_rag_dagster.backends.enrich.entities import find_medications, find_organizations, find_people
from ray_rag_dagster.backends.enrich.keyphrases import find_key_phrases
from ray_rag_dagster.backends.enrich.pii import has_pii, redact_pii


def without_pii(items: list[str]) -> list[str]:
    """``items`` minus any that still holds an email, phone number, SSN or date of birth.

    Entities and phrases are read from redacted text, so this is a second line: a name or phrase glued
    to a fragment of a value must not carry it into the index's metadata.
    """
    return [item for item in items if not has_pii(item)]


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
                "people": without_pii(find_people(redacted)),
                "organizations": without_pii(find_organizations(redacted)),
                "medications": without_pii(find_medications(redacted)),
            },
            key_phrases=without_pii(find_key_phrases(redacted)),
            enricher=self.name,
        )
