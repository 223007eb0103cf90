"""Benchmarks of the ingestion pipeline: ``python -m bench`` (see ``bench/__main__.py``).

Not part of the package the app imports. Every comparison runs both sides in the same invocation and is
reported as a ratio, since absolute times on a shared 2-core machine vary from run to run.
"""
