"""2. Orchestration overhead: the five stage functions in a loop vs the Dagster + Ray pipeline (`ingest_paths`).

Each side runs in its own fresh process with its own state home: the first (warm-up) document there shows the
cold start (model loading; for the pipeline also Ray start-up and worker processes), the ten documents after
it the warm cost.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from bench.common import DOCLING_PDFS, Stopwatch, in_child, md5_of, ratio, scratch_dir


def prepare_documents(folder: Path, quick: bool) -> tuple[Path, list[Path]]:
    """A warm-up PDF and ten distinct documents: docling's six PDFs and the samples under two names each."""
    from ray_rag_dagster.samples import write_samples

    samples_a = write_samples(folder / "samples-a")
    samples_b = [p.rename(p.with_name(f"copy-{p.name}")) for p in write_samples(folder / "samples-b")]
    warmup_protocol = write_samples(folder / "warmup")[0]
    warmup = warmup_protocol.rename(warmup_protocol.with_name(f"warmup-{warmup_protocol.name}"))
    documents = [*sorted(DOCLING_PDFS.glob("*.pdf")), *samples_a, *samples_b]
    if quick:
        documents = documents[:2]
    return warmup, documents


def _direct(home: str, warmup: str, documents: list[str]) -> dict[str, Any]:
    from ray_rag_dagster.backends import build_object_store
    from ray_rag_dagster.errors import DocumentError
    from ray_rag_dagster.ids import document_id_for, version_of
    from ray_rag_dagster.settings import Settings
    from ray_rag_dagster.stages.chunk import run_chunk
    from ray_rag_dagster.stages.embed import run_embed
    from ray_rag_dagster.stages.enrich import run_enrich
    from ray_rag_dagster.stages.extract import merge_extract, plan_extract, run_extract
    from ray_rag_dagster.stages.load import run_load
    from ray_rag_dagster.stages.manifest import DocumentRef

    settings = Settings(home=Path(home))
    store = build_object_store(settings)

    def ingest(path: Path) -> str:
        key = f"input/{path.name}"
        store.put_bytes(key, path.read_bytes())
        document = DocumentRef(document_id=document_id_for(key), version=version_of(md5_of(path)), source_key=key)
        try:
            # The same stage functions the assets call, without Dagster and Ray.
            ranges = plan_extract(settings, document, key)
            output = merge_extract(settings, document, [run_extract(settings, document, key, r) for r in ranges])
        except DocumentError:
            return "FAILED"
        for stage in (run_chunk, run_enrich, run_embed, run_load):
            output = stage(settings, document, output.key)
        return "COMPLETED"

    watch = Stopwatch()
    ingest(Path(warmup))
    first = watch.seconds
    watch = Stopwatch()
    statuses = [ingest(Path(p)) for p in documents]
    return {"first_document_seconds": first, "documents_seconds": watch.seconds, "statuses": statuses}


def _pipeline(home: str, warmup: str, documents: list[str]) -> dict[str, Any]:
    os.environ["DAGSTER_HOME"] = str(Path(home) / "dagster")  # this home's own Dagster instance
    from ray_rag_dagster.cli import ingest_paths
    from ray_rag_dagster.settings import Settings

    settings = Settings(home=Path(home))
    watch = Stopwatch()
    ingest_paths(settings, [Path(warmup)])
    first = watch.seconds
    watch = Stopwatch()
    outcomes = ingest_paths(settings, [Path(p) for p in documents])
    return {
        "first_document_seconds": first,
        "documents_seconds": watch.seconds,
        "statuses": [o.status for o in outcomes],
    }


def run(quick: bool) -> dict[str, Any]:
    with scratch_dir("orchestration") as folder:
        warmup, documents = prepare_documents(folder / "docs", quick)
        ids = {f"input/{p.name}" for p in documents}
        assert len(ids) == len(documents) and f"input/{warmup.name}" not in ids, "document ids must be distinct"
        args = (str(warmup), [str(p) for p in documents])
        direct = in_child(_direct, str(folder / "direct-home"), *args)
        pipeline = in_child(_pipeline, str(folder / "pipeline-home"), *args)
        shutil.rmtree(folder / "docs", ignore_errors=True)
    return {
        "documents": [Path(p).name for p in args[1]],
        "direct": direct,
        "pipeline": pipeline,
        "warm_ratio_pipeline_over_direct": ratio(pipeline["documents_seconds"], direct["documents_seconds"]),
        "cold_first_document_ratio": ratio(pipeline["first_document_seconds"], direct["first_document_seconds"]),
        "overhead_seconds_per_document": round(
            (pipeline["documents_seconds"] - direct["documents_seconds"]) / len(documents), 2
        ),
    }
