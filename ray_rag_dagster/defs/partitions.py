"""One partition per document: the key is the document id (``doc_<12 hex>`` of its source key).

Dagster recommends at most 100,000 partitions per asset; the README's scaling notes say what to do past it.
"""

import dagster as dg

documents = dg.DynamicPartitionsDefinition(name="documents")
