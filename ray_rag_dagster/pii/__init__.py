"""PII detection that does not share code with the enricher's redactor (see :mod:`.detect`)."""

from ray_rag_dagster.pii.detect import DETECTED_KINDS, find_pii

__all__ = ["DETECTED_KINDS", "find_pii"]
