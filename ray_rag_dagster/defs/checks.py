"""Asset checks, one partition (document) at a time, on what each stage wrote to the object store.

Each check is a plain function of the settings and the stage's manifest (its :class:`StageOutput`) that
returns a :class:`CheckOutcome`. The ingest multi-asset declares them as check specs and evaluates each one
right after its stage finishes for a document (:func:`evaluate_checks`), so a batch run reports one check
evaluation per document, shown on the asset's page. None is blocking: a failed check is reported, and the
pipeline's own status (COMPLETED/FAILED) stays what the stages say.

Metadata carries counts, chunk indices and PII *kinds* only: never the text that was found.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from ray_rag_dagster.backends import build_embedder, build_object_store
from ray_rag_dagster.defs.partitions import documents
from ray_rag_dagster.evaluation.answer_keys import ANSWER_KEY_SOURCES, default_answer_keys_dir
from ray_rag_dagster.evaluation.metrics import MRR_DEPTH, RECALL_K
from ray_rag_dagster.evaluation.run import run_evaluation
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.chunk import load_document
from ray_rag_dagster.stages.embed import load_vectors
from ray_rag_dagster.stages.manifest import StageOutput
from ray_rag_dagster.stages.page_markdown import ChunkMarkdownSerializer

# Floors for the retrieval check, below which it warns even when the baseline does worse. The pipeline
# scores about 0.8 recall@5 and 0.7 MRR@10 on the clinical answer keys (README, Quality).
MIN_RECALL_AT_K = 0.6
MIN_MRR = 0.5
LISTED = 10  # offending chunk indices listed in metadata

# Partitioned asset checks are "preview" in Dagster 1.13 (they work: a check runs per partition, in the same
# run as its asset). Without this, every load of the definitions prints the same warning four times.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    def result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=self.passed, description=self.description, metadata=self.metadata, severity=self.severity
        )


def check_every_chunk_embedded(settings: Settings, manifest: dict, expected_dimension: int) -> CheckOutcome:
    """One vector per enriched chunk, in the chunks' order, of the dimension the embedder is configured for."""
    output = StageOutput.model_validate(manifest)
    store = build_object_store(settings)
    info = store.get_json(output.key)
    vectors = load_vectors(store.get_bytes(keys.vectors(output.document)))
    hashes = [chunk["content_hash"] for chunk in store.get_jsonl(info["enriched_key"])]
    dimension = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    metadata = {
        "enriched_chunks": len(hashes),
        "vectors": int(vectors.shape[0]),
        "dimension": dimension,
        "recorded_dimension": int(info["dimension"]),
        "expected_dimension": expected_dimension,
        "model": info["model"],
    }
    problems = []
    if vectors.shape[0] != len(hashes):
        problems.append(f"{vectors.shape[0]} vectors for {len(hashes)} enriched chunks")
    if info["chunk_hashes"] != hashes:
        problems.append("the vectors were made from other chunks than the enriched ones (content hashes differ)")
    if not dimension == int(info["dimension"]) == expected_dimension:
        recorded = info["dimension"]
        problems.append(f"dimension {dimension} (recorded {recorded}), the embedder makes {expected_dimension}")
    if problems:
        return CheckOutcome(False, "; ".join(problems), metadata)
    return CheckOutcome(True, f"all {len(hashes)} chunks embedded, {dimension}-d", metadata)


def check_no_pii_left(settings: Settings, manifest: dict) -> CheckOutcome:
    """An independent detector (Presidio's pattern recognizers, not the enricher's redactor) finds no e-mail,
    phone, SSN or card number in any field of the enriched chunks: text, heading path, entities, key phrases,
    including values split across lines or table cells."""
    from ray_rag_dagster.pii.detect import find_pii

    output = StageOutput.model_validate(manifest)
    rows = build_object_store(settings).get_jsonl(output.key)
    left: Counter[str] = Counter()
    fields_with_pii: Counter[str] = Counter()
    offending = []
    for row in rows:
        found: Counter[str] = Counter()
        for name in ("text", "heading_path", "entities", "key_phrases"):
            value = row.get(name) or []
            if name == "heading_path":  # one string, its headings on lines of their own: a split value is joined
                strings = ["\n".join(value)]
            elif isinstance(value, dict):
                strings = [item for items in value.values() for item in items]
            else:
                strings = [value] if isinstance(value, str) else list(value)
            in_field = sum((find_pii(str(string)) for string in strings), Counter())
            if in_field:
                fields_with_pii[name] += 1
                found.update(in_field)
        if found:
            left.update(found)
            offending.append(row["chunk_index"])
    metadata: dict[str, Any] = {
        "chunks": len(rows),
        "chunks_with_pii": len(offending),
        **{f"pii_left_{kind}": count for kind, count in sorted(left.items())},
        **{f"chunks_with_pii_in_{name}": count for name, count in sorted(fields_with_pii.items())},
    }
    if offending:
        metadata["chunk_indices"] = ", ".join(map(str, offending[:LISTED]))
        kinds = ", ".join(sorted(left))
        fields = ", ".join(sorted(fields_with_pii))
        return CheckOutcome(False, f"{len(offending)} enriched chunks still hold PII ({kinds}) in {fields}", metadata)
    return CheckOutcome(True, f"no PII found in any field of {len(rows)} enriched chunks", metadata)


def check_tables_whole(settings: Settings, manifest: dict) -> CheckOutcome:
    """Every table of the extracted document sits whole inside one chunk, or was split between rows on purpose.

    A table too long for the chunk limit is split by the chunker between rows, its header repeated, and its
    parts marked (``table_part``): counted, and judged only on its rows, each of which must sit whole in a
    marked part. Any other table missing from every chunk was cut.
    """
    output = StageOutput.model_validate(manifest)
    chunks = build_object_store(settings).get_jsonl(output.key)
    doc = load_document(settings, output.document)
    serializer = ChunkMarkdownSerializer(doc=doc)
    parts = [chunk["text"] for chunk in chunks if chunk.get("table_part")]
    cut_pages, split = [], 0
    for table in doc.tables:
        text = serializer.serialize(item=table).text
        if not text or any(text in chunk["text"] for chunk in chunks):
            continue
        rows = [line for line in text.splitlines() if line.startswith("|")]
        if rows and all(any(row in part for part in parts) for row in rows):
            split += 1
        else:
            cut_pages.append(table.prov[0].page_no if table.prov else 0)
    metadata: dict[str, Any] = {
        "tables": len(doc.tables),
        "tables_split_between_rows": split,
        "split_tables": len(cut_pages),
        "chunk_size": f"{settings.chunk_max_tokens} tokens" if settings.chunk_max_tokens
        else f"{settings.chunk_target_chars} characters",
    }
    if cut_pages:
        metadata["split_table_pages"] = ", ".join(map(str, cut_pages[:LISTED]))
        return CheckOutcome(False, f"{len(cut_pages)} of {len(doc.tables)} tables were cut outside their rows", metadata)
    return CheckOutcome(True, f"all {len(doc.tables)} tables whole or split between rows ({split})", metadata)


def check_retrieval_quality(settings: Settings, manifest: dict) -> CheckOutcome:
    """Recall@5 and MRR@10 on this document's answer-key questions, against the BM25 baseline.

    Questions are asked of the whole index (a hit from another document does not count), and the
    baseline's corpus is every answer-keyed protocol in the index, as for ``ray-rag evaluate``. Below the
    baseline or the floors, the check warns.
    """
    output = StageOutput.model_validate(manifest)
    name = output.document.name
    if name not in ANSWER_KEY_SOURCES.values():
        return CheckOutcome(True, f"no answer key for {name}: not evaluated", {"evaluated": False})
    answer_keys = default_answer_keys_dir()
    if not answer_keys.is_dir():
        return CheckOutcome(True, f"answer keys not found at {answer_keys}: not evaluated", {"evaluated": False})
    report = run_evaluation(settings, answer_keys, only_documents=[name])
    ours, baseline = report.scores("pipeline"), report.scores("bm25_baseline")
    metadata: dict[str, Any] = {
        "evaluated": True,
        "questions": ours.questions,
        f"recall_at_{RECALL_K}": ours.recall,
        f"mrr_at_{MRR_DEPTH}": ours.mrr,
        f"baseline_recall_at_{RECALL_K}": baseline.recall,
        f"baseline_mrr_at_{MRR_DEPTH}": baseline.mrr,
        "search_text_weight": settings.search_text_weight,
    }
    shortfalls = []
    if ours.recall < baseline.recall:
        shortfalls.append(f"recall@{RECALL_K} {ours.recall:.3f} < BM25 baseline {baseline.recall:.3f}")
    if ours.mrr < baseline.mrr:
        shortfalls.append(f"MRR@{MRR_DEPTH} {ours.mrr:.3f} < BM25 baseline {baseline.mrr:.3f}")
    if ours.recall < MIN_RECALL_AT_K:
        shortfalls.append(f"recall@{RECALL_K} {ours.recall:.3f} < floor {MIN_RECALL_AT_K}")
    if ours.mrr < MIN_MRR:
        shortfalls.append(f"MRR@{MRR_DEPTH} {ours.mrr:.3f} < floor {MIN_MRR}")
    summary = f"recall@{RECALL_K} {ours.recall:.3f}, MRR@{MRR_DEPTH} {ours.mrr:.3f} on {ours.questions} questions"
    if shortfalls:
        return CheckOutcome(False, "; ".join(shortfalls), metadata, dg.AssetCheckSeverity.WARN)
    return CheckOutcome(True, f"{summary}, at least the BM25 baseline", metadata, dg.AssetCheckSeverity.WARN)


# (check name, asset it checks, function of (settings, manifest), description)
_CHECKS = (
    ("tables_not_split", "chunks", check_tables_whole, "Tables are whole in a chunk or split between rows."),
    ("no_pii_left", "enriched_chunks", check_no_pii_left, check_no_pii_left.__doc__),
    ("every_chunk_embedded", "embeddings", None, check_every_chunk_embedded.__doc__),
    ("retrieval_quality", "vector_index_entries", check_retrieval_quality,
     "Retrieval on the document's USDM answer key: recall@5 and MRR@10 vs a BM25 baseline (warns)."),
)
CHECK_SPECS = [
    dg.AssetCheckSpec(name, asset=asset, partitions_def=documents, description=(description or "").strip())
    for name, asset, _function, description in _CHECKS
]


def evaluate_checks(
    context: dg.AssetExecutionContext, settings: Settings, asset: str, output: StageOutput
) -> Iterator[dg.AssetCheckEvaluation]:
    """The selected checks of ``asset`` on one document's stage output, as partitioned check evaluations."""
    selected = context.selected_asset_check_keys
    manifest = output.model_dump()
    for name, checked_asset, function, _description in _CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey(checked_asset), name)
        if checked_asset != asset or key not in selected:
            continue
        if function is None:
            outcome = check_every_chunk_embedded(settings, manifest, build_embedder(settings).dimension)
        else:
            outcome = function(settings, manifest)
        yield dg.AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=name,
            passed=outcome.passed,
            partition=output.document.document_id,
            metadata=outcome.metadata,
            severity=outcome.severity,
            description=outcome.description,
        )
