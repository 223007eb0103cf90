"""Runs inside a subprocess of one side's code (``python -m bench.flow_child SPEC.json OUT.json``).

Modes:
- ``register``: put PDFs in the inbox, register their versions, add their partitions (no runs).
- ``direct``: the stage functions through ``ray_rag_dagster.compute.flow.run_stages`` (no Dagster) on the state
  folder's shared Ray, for a warm-up list, then for the measured list.
- ``interleaved``: one warm process; warm both paths up, then the groups in the order direct, pipeline, pipeline,
  direct (repeated): the direct path or the pipeline (``ray_rag_dagster.ingest.ingest_paths``: Dagster runs, as
  ``ray-rag ingest`` does), on the same Ray.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def _settings(home: str) -> Any:
    from ray_rag_dagster.settings import Settings

    return Settings(home=Path(home))


def direct(settings: Any, paths: list[Path]) -> dict[str, Any]:
    """Put the PDFs in the object store (``input/<name>``) and run all stages on them with ``run_stages``."""
    from ray_rag_dagster.backends import build_object_store
    from ray_rag_dagster.compute.flow import run_stages
    from ray_rag_dagster.ids import document_id_for, version_of
    from ray_rag_dagster.stages.manifest import DocumentRef

    store = build_object_store(settings)
    started = time.perf_counter()
    documents = []
    for path in paths:
        data = path.read_bytes()
        key = f"input/{path.name}"
        store.put_bytes(key, data)
        version = version_of(hashlib.md5(data).hexdigest())
        documents.append(DocumentRef(document_id=document_id_for(key), version=version, source_key=key))
    events, failures, first_event = 0, [], None
    for event in run_stages(settings, documents):
        events += 1
        first_event = first_event or time.perf_counter() - started
        error = getattr(event, "error", None) or (event.get("error") if isinstance(event, dict) else None)
        if error:
            failures.append(str(error)[:300])
    return {"documents": len(paths), "seconds": round(time.perf_counter() - started, 3), "events": events,
            "expected_events": 5 * len(paths), "failures": failures,
            "first_event_seconds": round(first_event or 0, 3)}


def pipeline(settings: Any, paths: list[Path]) -> dict[str, Any]:
    from collections import Counter

    try:
        from ray_rag_dagster.ingest import ingest_paths  # the new code
    except ImportError:
        from ray_rag_dagster.cli import ingest_paths  # the old code

    started = time.perf_counter()
    outcomes = ingest_paths(settings, paths)
    seconds = time.perf_counter() - started
    statuses = Counter(getattr(outcome, "status", "?") for outcome in outcomes or [])
    return {"documents": len(paths), "seconds": round(seconds, 3), "statuses": dict(statuses)}


def register(settings: Any, paths: list[Path]) -> dict[str, Any]:
    """What the inbox sensor does before it requests runs, without requesting any: put each PDF in the inbox,
    register its version in the status store, add its partition."""
    import dagster as dg

    from ray_rag_dagster.backends import build_object_store, build_status_store
    from ray_rag_dagster.defs.partitions import documents as partitions
    from ray_rag_dagster.ids import document_id_for, version_of

    started = time.perf_counter()
    store, status = build_object_store(settings), build_status_store(settings)
    ids = []
    for path in paths:
        data = path.read_bytes()
        key = f"input/{path.name}"
        store.put_bytes(key, data)
        document_id = document_id_for(key)
        status.register(document_id, version_of(hashlib.md5(data).hexdigest()), key)
        ids.append(document_id)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(partitions.name, ids)
    return {"partition_keys": ids, "partitions_def": partitions.name,
            "seconds": round(time.perf_counter() - started, 2)}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    settings = _settings(spec["home"])
    result: dict[str, Any] = {"mode": spec["mode"]}
    if spec["mode"] == "direct":
        if spec.get("warmup"):
            result["warmup"] = direct(settings, [Path(p) for p in spec["warmup"]])
        result["measured"] = direct(settings, [Path(p) for p in spec["paths"]])
    elif spec["mode"] == "register":
        result.update(register(settings, [Path(p) for p in spec["paths"]]))
    elif spec["mode"] == "interleaved":
        warm_direct, warm_pipeline = spec["warmup"]
        result["warmup"] = {"direct": direct(settings, [Path(p) for p in warm_direct]),
                            "pipeline": pipeline(settings, [Path(p) for p in warm_pipeline])}
        rounds = []
        for index, group in enumerate(spec["groups"]):
            # A B B A: a drift of the machine over the run weighs on both paths alike.
            path_kind = "direct" if index % 4 in (0, 3) else "pipeline"
            runner = direct if path_kind == "direct" else pipeline
            rounds.append({"path": path_kind, **runner(settings, [Path(p) for p in group])})
            Path(out_path).write_text(json.dumps({**result, "rounds": rounds}, indent=1))
        result["rounds"] = rounds
    else:
        raise ValueError(f"unknown mode {spec['mode']!r}")
    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
