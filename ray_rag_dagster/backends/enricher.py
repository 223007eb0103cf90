"""Compatibility alias: the enricher now lives in the :mod:`ray_rag_dagster.backends.enrich` package.

Import from there; this module re-exports its public names for code written before the split.
"""

from ray_rag_dagster.backends.enrich import *  # noqa: F403
from ray_rag_dagster.backends.enrich import __all__  # noqa: F401
