"""Chunk enrichment: redact PII, then pull entities and key phrases out of the redacted text.

Redaction runs first and everything else reads only its output, so no entity, phrase or embedding can
carry an email, phone number, SSN or labelled date of birth. One concern per module:

- :mod:`.base`: the :class:`Enricher` seam and :class:`Enrichment`, its result per chunk;
- :mod:`.pii`: :func:`redact_pii` (text) and :func:`redact_fields` (any nested value), public so that a
  remote enricher and the enrich stage apply them before anything leaves the machine or is written;
- :mod:`.entities`: people, organisations (cue-based rules) and medications (a drug dictionary);
- :mod:`.keyphrases`: YAKE key phrases;
- :mod:`.local`: :class:`LocalEnricher`, the in-process default (no model weights, no network);
- :mod:`.openai`: :class:`OpenAIEnricher`, a chat model with structured output.

The independent check that nothing was missed lives apart, in :mod:`ray_rag_dagster.pii.detect`.
"""

from ray_rag_dagster.backends.enrich.base import KEY_PHRASES, REDACTED, Enricher, Enrichment
from ray_rag_dagster.backends.enrich.entities import find_medications, find_organizations, find_people
from ray_rag_dagster.backends.enrich.keyphrases import find_key_phrases
from ray_rag_dagster.backends.enrich.local import LocalEnricher, without_pii
from ray_rag_dagster.backends.enrich.openai import (
    InvalidReply,
    LLMEnrichment,
    OpenAIEnricher,
    apply_model_redactions,
)
from ray_rag_dagster.backends.enrich.pii import PII_KINDS, has_pii, redact_fields, redact_pii

__all__ = [
    "KEY_PHRASES",
    "PII_KINDS",
    "REDACTED",
    "Enricher",
    "Enrichment",
    "InvalidReply",
    "LLMEnrichment",
    "LocalEnricher",
    "OpenAIEnricher",
    "apply_model_redactions",
    "find_key_phrases",
    "find_medications",
    "find_organizations",
    "find_people",
    "has_pii",
    "redact_fields",
    "redact_pii",
    "without_pii",
]
