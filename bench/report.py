"""results.json → REPORT.md with tables and PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_MARKER = "<!-- generated -->"


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "_no rows_\n"
    columns = columns or list(rows[0])
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _bar_plot(path: Path, labels: list[str], values: list[float], title: str, xlabel: str, log: bool = False) -> str:
    figure, axes = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.2))
    axes.barh(labels[::-1], values[::-1], color="#4c72b0", log=log)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    for y, value in enumerate(values[::-1]):
        axes.annotate(f"{value:.3g}", (value, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"![{title}]({path.name})\n"


def _meta(result: dict[str, Any]) -> str:
    meta = result.get("meta", {})
    return (
        f"_{meta.get('seconds')} s; load average {meta.get('load_average_before')} before, "
        f"{meta.get('load_average_after')} after{'; QUICK (smoke test) inputs' if meta.get('quick') else ''}_\n"
    )


def write_report(results: dict[str, Any], out: Path) -> Path:
    benchmarks = results.get("benchmarks", {})
    parts = [
        "# Benchmarks\n",
        (f"Machine: {results.get('machine', {})}. Shared with other engineers: absolute times vary; the ratios "
         "compare both sides measured in the same invocation. Load averages are given per benchmark.\n"),
    ]
    for name, result in benchmarks.items():
        parts.append(f"\n## {name}\n")
        parts.append(_meta(result))
        if "error" in result:
            parts.append(f"\n**failed**: `{result['error']}`\n")
            continue
        if "skipped" in result and name in ("bulk", "storm", "overhead", "backfill", "soak"):
            parts.append(f"skipped: {result['skipped']}\n")
            continue
        parts.append(_SECTIONS.get(name, _generic)(result, out))
    path = out / "REPORT.md"
    # Hand-written text above the marker (the proposed README section) survives regeneration.
    previous = path.read_text() if path.is_file() else ""
    prefix = previous.split(_MARKER)[0] if _MARKER in previous else ""
    path.write_text(prefix + _MARKER + "\n" + "\n".join(parts))
    return path


def _generic(result: dict[str, Any], out: Path) -> str:
    return "```\n" + "\n".join(f"{k}: {v}" for k, v in result.items() if k != "meta") + "\n```\n"


def _extraction(result: dict[str, Any], out: Path) -> str:
    summary = result["summary"]
    text = _table(summary) + "\nPer document:\n\n" + _table(result["per_document"])
    text += _bar_plot(out / "extraction_speed.png", [r["extractor"] for r in summary],
                      [r["pages_per_second"] for r in summary], "Extraction speed", "pages/s")
    return text


def _orchestration(result: dict[str, Any], out: Path) -> str:
    rows = [
        {"side": side, "first (warm-up) document s": result[side]["first_document_seconds"],
         f"{len(result['documents'])} documents s": result[side]["documents_seconds"],
         "statuses": ", ".join(sorted(set(result[side]["statuses"])))}
        for side in ("direct", "pipeline")
    ]
    return (
        _table(rows)
        + f"\n**pipeline ÷ direct, warm: {result['warm_ratio_pipeline_over_direct']}**; first document (cold): "
        f"{result['cold_first_document_ratio']}; overhead {result['overhead_seconds_per_document']} s per document.\n"
    )


def _scaling(result: dict[str, Any], out: Path) -> str:
    batch = result["batch"]
    sharding = result["sharding"]
    rows = [{"shards": 1, "seconds": sharding["single_task_seconds"], "speedup": 1.0,
             "pages equal": sharding["pages"], "differing pages": ""}]
    rows += [{"shards": s["shards"], "seconds": s["seconds"], "speedup": s["speedup"], "pages equal": s["pages_equal"],
              "differing pages": ", ".join(map(str, s["differing_pages"]))} for s in sharding["shards"]]
    text = (
        f"(a) batch of {batch['documents']} documents ({batch['pages']} pages): 1 CPU {batch['seconds_1_cpu']:.1f} s, "
        f"2 CPUs {batch['seconds_2_cpus']:.1f} s → **speed-up {batch['speedup_2_over_1']}**\n\n"
        f"(b) {sharding['pages']}-page protocol as page-range shards on a 2-CPU Ray:\n\n" + _table(rows)
        + f"\nSharding pays (≥ 1.2×): **{result['sharding_pays']}** (best {result['best_shard_speedup']}).\n"
    )
    labels = ["batch 2 CPUs vs 1"] + [f"{s['shards']} shards vs 1 task" for s in sharding["shards"]]
    speedups = [batch["speedup_2_over_1"] or 0] + [s["speedup"] or 0 for s in sharding["shards"]]
    text += _bar_plot(out / "scaling.png", labels, speedups, "Speed-up on 2 cores", "×")
    return text


def _reuse(result: dict[str, Any], out: Path) -> str:
    rows = [{"model": name, **result[name]} for name in ("extract", "embed_torch", "embed_onnx")]
    return _table(rows)


def _embedding(result: dict[str, Any], out: Path) -> str:
    variants = result["variants"]
    if "sets" not in result:  # results.json from before the token-dense rows
        text = (f"{result['chunks']} chunks of {result['chunk_chars']} characters; ONNX export (one-time build): "
                f"{result['export_seconds']} s.\n\n" + _table(variants))
        return text + _bar_plot(out / "embedding_throughput.png", [v["variant"] for v in variants],
                                [v["chunks_per_second"] for v in variants], "Embedding throughput", "chunks/s")
    sets = "; ".join(f"{kind}: {s['chunks']} chunks of {s['chars']} characters, {s['word_pieces_mean']} word pieces "
                     f"({s['windows_mean']} windows) on average" for kind, s in result["sets"].items())
    ratios = "; ".join(f"{kind} ×{r['wall']} (wall), ×{r['cpu']} (CPU time)"
                       for kind, r in result["after_vs_before"].items())
    text = (f"{sets}. One-time builds: ONNX export {result['onnx_export_seconds']} s, static distillation "
            f"{result['static_distill_seconds']} s.\n\n**ONNX AFTER ÷ BEFORE**: {ratios}.\n\n" + _table(variants))
    text += _bar_plot(out / "embedding_throughput.png", [f"{v['chunks']}: {v['variant']}" for v in variants],
                      [v["chunks_per_second"] for v in variants], "Embedding throughput", "chunks/s (log scale)",
                      log=True)
    return text


def _search(result: dict[str, Any], out: Path) -> str:
    sizes = result["sizes"]
    text = (f"{result.get('corpus', 'synthetic chunks')}.\n\nIn process (`LanceDBIndex.search`, k=5):\n\n"
            + _table(sizes) + f"\np50 grows {result['p50_growth']}× for {result['size_growth']}× the chunks.\n")
    if "http" in result:  # results.json from before the server and CLI rows
        http, targets = result["http"], result["targets"]
        rows = [
            {"what": f"`/api/search` over HTTP, {http['questions']} questions in a row (client side)",
             "p50": http["p50_ms"], "p95": http["p95_ms"], "p99": http["p99_ms"], "unit": "ms",
             "target": f"p95 ≤ {targets['http_p95_ms']:g} ms: {'met' if targets['http_p95_met'] else 'NOT met'}",
             "load": http["load_average"][0]},
            {"what": "the same, the server's own `took_ms`", "p50": http["server_took"]["p50_ms"],
             "p95": http["server_took"]["p95_ms"], "p99": http["server_took"]["p99_ms"], "unit": "ms"},
        ]
        for key, label, target, met in (
            ("cli_with_server", "cold `ray-rag search --json`, server up", targets["cold_with_server_seconds"],
             targets["cold_with_server_met"]),
            ("cli_without_server", "cold `ray-rag search --json`, no server", targets["cold_seconds"],
             targets["cold_met"]),
        ):
            cli = result[key]
            rows.append({"what": f"{label} (median of {cli['runs']}; min {cli['min_seconds']} s; "
                                 f"CPU {cli['median_cpu_seconds']} s)", "p50": cli["median_seconds"], "unit": "s",
                         "target": f"≤ {target:g} s: {'met' if met else 'NOT met'}", "load": cli["load_average"][0]})
        text += (f"\n`ray-rag serve` on the {sizes[-1]['chunks']:,}-chunk index (up in "
                 f"{result['server_start_seconds']} s):\n\n" + _table(rows))
    labels = [f"{s['chunks']:,} p50" for s in sizes] + [f"{s['chunks']:,} p95" for s in sizes]
    text += _bar_plot(out / "search_latency.png", labels, [s["p50_ms"] for s in sizes] + [s["p95_ms"] for s in sizes],
                      "Hybrid search latency (LanceDBIndex)", "ms")
    return text


def _e2e(result: dict[str, Any], out: Path) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}\n"
    return _table([{k: v for k, v in result.items() if k != "meta"}])


def _memory(result: dict[str, Any], out: Path) -> str:
    stages = result["stages"]
    text = (f"Document: {result['document']}. Import baseline (python + stage modules): "
            f"{result['import_baseline_mb']} MB; idle Ray worker: {result['ray_worker_idle_mb']} MB.\n\n"
            + _table(stages, ["stage", "peak_rss_mb", "above_import_baseline_mb", "seconds", "counts"]))
    text += _bar_plot(out / "memory.png", [s["stage"] for s in stages], [s["peak_rss_mb"] for s in stages],
                      "Peak RSS per stage (fresh process)", "MB")
    return text


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.0f} %"


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"


def _bulk(result: dict[str, Any], out: Path) -> str:
    rows = []
    sides = [side for side in ("old", "new", "new_minilm") if side in result]
    labels = {"new_minilm": "new, MiniLM int8 embedder"}
    for side in sides:
        r = result[side]
        stages = r.get("stage_seconds", {})
        rows.append({
            "side": labels.get(side, side), "wall s": r["wall_seconds"], "pages/s": r["pages_per_second"],
            "CPU busy (all cores)": _pct(r["cpu_busy_fraction"]), "statuses": _statuses(r["statuses"]),
            "min MemAvailable": f"{r['mem_available_min_pct']} %", "Ray clusters (max)": r["ray_clusters_max"],
            "Dagster runs": r["dagster"]["runs"],
            **{f"{stage} s": stages.get(stage) for stage in ("extract", "chunk", "enrich", "embed", "load")},
            "stage s total": stages.get("total"),
        })
    data = result.get("data_set", {})
    text = (f"{result['documents']} real PDFs, {result['pages']} pages (sources: {data.get('sources', '–')}); "
            f"old = {result['old_commit'][:7]}, new = {result['new_code']}. Stage seconds from "
            f"{result['new'].get('stage_seconds', {}).get('source', '–')}.\n\n" + _table(rows)
            + f"\n**speed-up (new ÷ old pages/s): {result['speedup_new_over_old']}**; all COMPLETED: old "
            f"{result['old']['all_completed']}, new {result['new']['all_completed']}.\n")
    if "new_minilm" in result:
        text += (f"\n{labels['new_minilm']}: speed-up {result['speedup_new_minilm_over_old']}, all COMPLETED "
                 f"{result['new_minilm']['all_completed']}.\n")
    for side in sides:
        for failure in result[side]["dagster"].get("failures", []):
            text += f"\n- {side}: failed run: `{failure}`\n"
    text += _bar_plot(out / "bulk_pages_per_second.png", [labels.get(side, side) for side in sides],
                      [result[side]["pages_per_second"] for side in sides],
                      f"Bulk ingest of {result['documents']} PDFs", "pages/s")
    return text


def _storm(result: dict[str, Any], out: Path) -> str:
    storm, ingest, before = result["storm"], result["ingest"], result["before_old_code"]
    rows = [
        {"run": f"storm: {result['documents']} PDFs dropped, `ray-rag dev`",
         "seconds": storm.get("drop_to_all_completed_seconds") or storm.get("drop_to_all_ended_seconds"),
         "statuses": _statuses(storm.get("statuses", {})),
         "min MemAvailable": f"{storm.get('mem_available_min_pct')} %",
         "Ray clusters (max)": storm.get("ray_clusters_max"),
         "Dagster runs": f"{storm['dagster']['runs']} ({_statuses(storm['dagster'].get('by_status', {}))})"},
        {"run": f"`ray-rag ingest` of the same {result['documents']}", "seconds": ingest["wall_seconds"],
         "statuses": _statuses(ingest["statuses"]), "min MemAvailable": f"{ingest['mem_available_min_pct']} %",
         "Ray clusters (max)": ingest["ray_clusters_max"],
         "Dagster runs": f"{ingest['dagster']['runs']} ({_statuses(ingest['dagster'].get('by_status', {}))})"},
        {"run": f"before (old code, facts.md): {before['documents']} PDFs dropped",
         "seconds": before["drop_to_all_ended_seconds"], "statuses": f"FAILED {before['failed']}",
         "min MemAvailable": f"{before['mem_available_gb_min']} of {before['mem_available_gb_start']} GB",
         "Ray clusters (max)": before["ray_clusters"], "Dagster runs": before["documents"]},
    ]
    failed = storm.get("failed") or []
    text = (f"{result['documents']} real PDFs, {result['pages']} pages. Storm seconds: drop → last document "
            "COMPLETED (in the index). Ray clusters: `gcs_server` processes on the whole machine "
            f"({storm.get('ray_clusters_before')} before the storm).\n\n" + _table(rows)
            + f"\n**storm ÷ ingest: {result['storm_over_ingest']}** (target ≤ {result['target_storm_over_ingest']})"
            + (f"; failures: {failed}" if failed else "")
            + f". Searchable (COMPLETED with vectors): {storm.get('completed_with_vectors')}; every run ended "
            f"{storm.get('drop_to_runs_ended_seconds')} s after the drop.\n")
    for name, part in (("storm", storm), ("ingest", ingest)):
        for failure in part["dagster"].get("failures", []):
            text += f"\n- {name}: failed run: `{failure}`"
    return text + "\n"


def _overhead(result: dict[str, Any], out: Path) -> str:
    if "rounds" not in result:
        return _generic(result, out)
    rows = [{"round": i + 1, "path": r["path"], "documents": r["documents"], "seconds": r["seconds"],
             "s/document": round(r["seconds"] / r["documents"], 3)} for i, r in enumerate(result["rounds"])]
    reference = result.get("old_reference", {})
    text = (f"{result['documents']} generated 1–2 page PDFs in {result['groups']} groups, one warm process, one "
            "shared Ray; direct = `compute.flow.run_stages`, pipeline = `ingest.ingest_paths`.\n\n" + _table(rows)
            + f"\n**pipeline ÷ direct: {result['ratio_pipeline_over_direct']}** "
            f"(target ≤ {result['target_ratio']}); "
            f"overhead {result['overhead_seconds_per_document']} s per document.\n")
    if "ratio_pipeline_over_direct" in reference:
        text += (f"\nOld code for reference ({reference['documents']} of the same documents): pipeline ÷ direct "
                 f"{reference['ratio_pipeline_over_direct']}, overhead {reference['overhead_seconds_per_document']} s "
                 f"per document ({reference['note']}).\n")
    elif reference:
        text += f"\nOld code reference failed: `{reference.get('error')}`\n"
    return text


def _backfill(result: dict[str, Any], out: Path) -> str:
    b = result["backfill"]
    runs = b["backfill_runs"]
    rows = [{
        "documents": result["documents"], "partitions/run": result["partitions_per_run"],
        "runs": result["runs"], "target runs ≤": result["target_max_runs"], "backfill s": result["backfill_seconds"],
        "s/document": result["seconds_per_document"], "direct s": result["direct"].get("seconds"),
        "Dagster s/document": result["dagster_seconds_per_document"], "statuses": _statuses(b.get("statuses", {})),
        "runs by status": _statuses(runs["by_status"]),
    }]
    text = (_table(rows) + f"\nBackfill {b.get('backfill_id')} ({b.get('backfill_status')}) of "
            f"{', '.join(b.get('assets', []))}; launch delays summed {runs['create_to_start_seconds_sum']} s, "
            f"run time summed {runs['run_seconds_sum']} s. {result['definition']}.\n")
    if "error" in result["direct"]:
        text += f"\nDirect reference failed: `{result['direct']['error']}`\n"
    return text


def _soak(result: dict[str, Any], out: Path) -> str:
    memory, index = result["memory"], result["index"]
    rows = [{
        "documents": f"{result['documents']} ({result['real_pdfs']} real, {result['generated_pdfs']} generated)",
        "waves": " + ".join(map(str, result["waves"])) + f" every {result['wave_interval_seconds']:.0f} s",
        "stuck": len(result["stuck"]), "failed": len(result["failed"]), "statuses": _statuses(result["statuses"]),
        "deleted gone": f"{sum(not n for n in index['deleted_rows_left'].values())}/{len(result['deleted'])}",
        "replaced: new text only": f"{sum(r['only_new_version'] and r['marker_found'] for r in index['replaced'].values())}"
                                   f"/{len(result['replaced'])}",
        "worker peak MB (max)": memory["worker_peak_mb_max"], "worker processes": memory["worker_processes"],
        "recycled": memory["worker_replacements"], "raylet / GCS peak MB": f"{memory['raylet_peak_mb']:.0f} / "
                                                                             f"{memory['gcs_peak_mb']:.0f}",
        "min MemAvailable GB": round(result["mem_available_min_mb"] / 1024, 1),
        "runs in flight (max)": result["runs_in_flight_max"],
        "first drop → all ended s": result.get("first_drop_to_all_ended_seconds"),
    }]
    peaks = ", ".join(f"{pid}: {mb:.0f}" for pid, mb in memory["worker_peak_mb"].items())
    text = (f"{result['pages']} pages COMPLETED. Churn {result['churn_after_seconds']:.0f} s after the first wave: "
            f"{len(result['replaced'])} files replaced, {len(result['deleted'])} deleted. Worker peak = max(sampled "
            f"RSS, VmHWM) per StageWorker pid; recycled = pids gone while the soak ran.\n\n" + _table(rows)
            + f"\nPeak MB per worker pid: {peaks}.\n")
    for entry in result["stuck"]:
        text += f"\n- stuck: {entry['name']} {entry['status']} at {entry['stage']} (expected {entry['expected']})"
    for entry in result["failed"]:
        text += f"\n- failed: {entry['name']} at {entry['stage']}: `{(entry['error'] or '')[:200]}`"
    if result.get("timed_out"):
        text += "\n- **timed out**"
    detail = out / "soak.json"
    timeline = json.loads(detail.read_text()).get("timeline", []) if detail.is_file() else []
    return text + "\n" + (_soak_plot(out / "soak_rss.png", timeline, result.get("events", [])) if timeline else "")


def _soak_plot(path: Path, timeline: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    minutes = [point["t"] / 60 for point in timeline]
    for pid in dict.fromkeys(pid for point in timeline for pid in point["workers_mb"]):
        top.plot(minutes, [point["workers_mb"].get(pid) for point in timeline], linewidth=1)
    top.plot(minutes, [point["raylet_mb"] for point in timeline], "k--", linewidth=1, label="raylet")
    top.plot(minutes, [point["gcs_server_mb"] for point in timeline], "k:", linewidth=1, label="GCS")
    top.set_ylabel("RSS MB (a line per worker pid)")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(minutes, [point["mem_available_mb"] / 1024 for point in timeline], color="#4c72b0")
    bottom.set_ylabel("MemAvailable GB")
    runs = bottom.twinx()
    runs.step(minutes, [point["runs_in_flight"] for point in timeline], color="#dd8452", where="post")
    runs.set_ylabel("Dagster runs in flight")
    for event in events:
        for axes in (top, bottom):
            axes.axvline(event["at_s"] / 60, color="red" if event["event"] == "churn" else "grey", alpha=0.4)
    bottom.set_xlabel("minutes since the first wave (grey: waves, red: replace + delete)")
    top.set_title("Soak: stage worker RSS over time")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"![Soak RSS over time]({path.name})\n"


_SECTIONS = {"extraction": _extraction, "orchestration": _orchestration, "scaling": _scaling, "reuse": _reuse,
             "embedding": _embedding, "search": _search, "e2e": _e2e, "memory": _memory,
             "bulk": _bulk, "storm": _storm, "overhead": _overhead, "backfill": _backfill, "soak": _soak}
