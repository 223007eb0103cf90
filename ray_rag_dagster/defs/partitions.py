"""One partition per document: the key is the document id, ``<file-name slug>-<8 hex>`` of its source key
(``protocol-v3-lilly-3f9a2c1b``), readable in the UI (ray_rag_dagster/ids.py).

Dagster recommends at most 100,000 partitions per asset; the README's scaling notes say what to do past it.
"""

import dagster as dg

documents = dg.DynamicPartitionsDefinition(name="documents")
# A run over several partitions carries its range in these tags (what a backfill with a BackfillPolicy sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_ranges(ordered_keys: list[str], wanted: set[str], size: int) -> list[list[str]]:
    """``wanted`` as runs of consecutive keys of ``ordered_keys`` (the partitions in the order they were
    added), each at most ``size`` long: what one run can take as a partition range."""
    batches: list[list[str]] = []
    current: list[str] = []
    for key in ordered_keys:
        if key in wanted and len(current) < size:
            current.append(key)
            continue
        if current:
            batches.append(current)
        current = [key] if key in wanted else []
    if current:
        batches.append(current)
    return batches
