"""Soak: 200 documents dropped into the inbox in waves while ``ray-rag dev`` runs, with files replaced and deleted
mid-run (new code only).

The documents are the real PDFs of ``bench/datasets.json`` (all 57 for the full run; the shortest first for a
smaller one) plus generated 1–2 page PDFs (bench/generated.py) up to the count, interleaved and dropped in
``WAVES`` waves ``WAVE_INTERVAL_SECONDS`` apart. Half an interval after the third wave, a churn wave replaces
``CHURN`` files of the first two waves with new content (a generated PDF carrying the marker
``replacement document <n>``) and deletes ``CHURN`` others, as users do while runs go on.

``ray-rag dev`` runs on a fresh state folder with its own Ray cluster registry (``RAY_RAG_CLUSTER_DIR`` in the
scratch folder), so the cluster, its workers and their memory are this soak's alone. Every ``SAMPLE_SECONDS``
the harness samples the RSS of each ``StageWorker`` process (by pid: workers are recycled after
``extract_max_calls`` extractions, so pids change), the raylet's and GCS's RSS, MemAvailable, the Dagster runs
in flight and the status counts. A worker's peak is the larger of its sampled RSS and the kernel's VmHWM.

The soak ends when every document is in an end state (COMPLETED or FAILED; DELETED for the deleted ones; the
replaced ones on their new version) or at the timeout. "Stuck" is every document not in its end state then, with
its audit trail. After the runs end, the index is checked: deleted documents have 0 rows, replaced ones only
rows of their new version, holding its marker text.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import datasets
from bench.common import RESULTS_DIR, md5_of, progress_line, scratch_dir
from bench.generated import write_small_pdfs
from bench.harness import (
    dagster_runs,
    latest_rows,
    meminfo,
    memory_kb,
    new_side,
    ray_processes,
    runs_in_flight,
    start_dev,
    status_query,
    stop_service,
    stop_state_processes,
    wait_daemon,
)

DOCUMENTS = 200
QUICK_DOCUMENTS = 12
WAVES = 4
WAVE_INTERVAL_SECONDS = 60.0
QUICK_WAVE_INTERVAL_SECONDS = 20.0
CHURN = 5  # files replaced, and as many deleted, in the churn wave
REAL_SHARE = 57 / 200  # real PDFs in the mix (all of the manifest's at 200 documents)
SAMPLE_SECONDS = 1.0
TIMELINE_EVERY = 5  # samples per point of the timeline kept in soak.json
TIMEOUT_SECONDS = 90 * 60  # after the last wave
RUNS_DRAIN_SECONDS = 300
END_STATES = ("COMPLETED", "FAILED")
INBOX = "input/"
REPLACEMENT_PREFIX = "replacement"


# --- the plan: what is dropped, replaced and deleted when (pure) ------------------------------------------------


@dataclass
class Plan:
    waves: list[list[Path]]  # files dropped under their own name, wave by wave
    churn_after_seconds: float  # since the first wave
    interval_seconds: float
    replacements: dict[str, Path] = field(default_factory=dict)  # inbox name -> file with the new content
    deletions: list[str] = field(default_factory=list)  # inbox names

    @property
    def names(self) -> list[str]:
        return [path.name for wave in self.waves for path in wave]

    def schedule(self) -> list[tuple[float, str, int]]:
        """(seconds after the first wave, "wave" | "churn", wave number) in time order."""
        events = [(index * self.interval_seconds, "wave", index) for index in range(len(self.waves))]
        return sorted(events + [(self.churn_after_seconds, "churn", len(self.waves))])


def mix(real: list[Path], generated: list[Path]) -> list[Path]:
    """Real and generated PDFs spread evenly through the order, so every wave holds both."""
    keyed = [((index + 0.5) / len(real), path) for index, path in enumerate(real)]
    keyed += [((index + 0.5) / len(generated), path) for index, path in enumerate(generated)]
    return [path for _, path in sorted(keyed, key=lambda item: item[0])]


def plan_waves(documents: list[Path], replacements: list[Path], waves: int = WAVES,
               interval_seconds: float = WAVE_INTERVAL_SECONDS) -> Plan:
    """``documents`` in ``waves`` waves of (nearly) equal size; the churn half an interval after the third wave
    (or the last) replaces ``len(replacements)`` files of the first two waves and deletes as many others."""
    names = [path.name for path in documents]
    if len(set(names)) != len(names):
        raise ValueError("every document needs its own file name (one inbox key each)")
    size = -(-len(documents) // waves)
    planned = [documents[start:start + size] for start in range(0, len(documents), size)]
    churn_wave = min(2, len(planned) - 1)
    early = [path.name for wave in planned[:max(churn_wave, 1)] for path in wave]
    if 2 * len(replacements) > len(early):
        raise ValueError(f"{len(replacements)} replacements and deletions need {2 * len(replacements)} files in "
                         f"the early waves, which hold {len(early)}")
    # Alternate through the early files: replaced and deleted ones come from every early wave.
    step = len(early) / (2 * len(replacements)) if replacements else 1
    chosen = [early[int(index * step)] for index in range(2 * len(replacements))]
    return Plan(
        waves=planned,
        churn_after_seconds=(churn_wave + 0.5) * interval_seconds,
        interval_seconds=interval_seconds,
        replacements=dict(zip(chosen[0::2], replacements)),
        deletions=chosen[1::2],
    )


# --- the verdict: stuck, failed, deleted, replaced (pure) -------------------------------------------------------


def document_id(name: str) -> str:
    from ray_rag_dagster.ids import document_id_for

    return document_id_for(INBOX + name)


def assess(plan: Plan, rows: list[dict[str, Any]], new_versions: dict[str, str]) -> dict[str, Any]:
    """Each planned document's state from all control rows: ended (COMPLETED/FAILED; DELETED if deleted; the
    replaced ones on ``new_versions[name]``) or stuck, with why."""
    by_document: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_document.setdefault(row["document_id"], []).append(row)
    for versions in by_document.values():
        versions.sort(key=lambda row: (row["updated_at"], row.get("rowid", 0)))
    statuses: dict[str, int] = {}
    stuck, failed = [], []
    for name in plan.names:
        versions = by_document.get(document_id(name), [])
        if name in plan.replacements:
            current = next((row for row in versions if row["processing_version"] == new_versions.get(name)), None)
        else:
            current = versions[-1] if versions else None
        status = current["status"] if current else "MISSING"
        wanted = ("DELETED",) if name in plan.deletions else END_STATES
        ended = status in wanted
        label = status if ended else f"{status} (not ended)"
        statuses[label] = statuses.get(label, 0) + 1
        if not ended:
            stuck.append({"name": name, "document_id": document_id(name), "status": status,
                          "stage": current.get("current_stage") if current else None,
                          "expected": "/".join(wanted), "versions": len(versions)})
        elif status == "FAILED":
            failed.append({"name": name, "document_id": document_id(name), "stage": current.get("current_stage"),
                           "error": current.get("error")})
    return {"statuses": statuses, "stuck": stuck, "failed": failed}


# --- memory of the Ray processes --------------------------------------------------------------------------------


@dataclass
class RayMemory:
    """Per-pid RSS of the stage workers, raylet and GCS of the soak's cluster, sampled over time."""

    home: Path
    workers: dict[int, dict[str, float]] = field(default_factory=dict)  # pid -> first/last seen, peaks
    peaks_mb: dict[str, float] = field(default_factory=lambda: {"raylet": 0.0, "gcs_server": 0.0})
    alive: list[int] = field(default_factory=list)

    def sample(self, seconds: float) -> dict[str, Any]:
        processes = ray_processes(self.home)
        point: dict[str, Any] = {"workers_mb": {}}
        self.alive = []
        for pid in processes["stage_worker"]:
            memory = memory_kb(pid)
            if memory is None:
                continue
            rss, hwm = memory[0] / 1024, memory[1] / 1024
            worker = self.workers.setdefault(pid, {"first_seen_s": round(seconds, 1), "peak_rss_mb": 0.0,
                                                   "vm_hwm_mb": 0.0})
            worker["last_seen_s"] = round(seconds, 1)
            worker["peak_rss_mb"] = round(max(worker["peak_rss_mb"], rss), 1)
            worker["vm_hwm_mb"] = round(max(worker["vm_hwm_mb"], hwm), 1)
            point["workers_mb"][str(pid)] = round(rss, 1)
            self.alive.append(pid)
        for role in ("raylet", "gcs_server"):
            rss = sum((memory_kb(pid) or (0, 0))[0] for pid in processes[role]) / 1024
            self.peaks_mb[role] = round(max(self.peaks_mb[role], rss), 1)
            point[f"{role}_mb"] = round(rss, 1)
        return point

    def summary(self) -> dict[str, Any]:
        peaks = {str(pid): max(w["peak_rss_mb"], w["vm_hwm_mb"]) for pid, w in self.workers.items()}
        return {
            "worker_processes": len(self.workers),
            # a pid that disappeared while the soak went on: a recycled (or crashed) worker
            "worker_replacements": len(self.workers) - len(self.alive),
            "worker_peak_mb_max": max(peaks.values(), default=None),
            "worker_peak_mb": peaks,
            "workers": {str(pid): worker for pid, worker in self.workers.items()},
            "raylet_peak_mb": self.peaks_mb["raylet"],
            "gcs_peak_mb": self.peaks_mb["gcs_server"],
        }


# --- the run ----------------------------------------------------------------------------------------------------


def _place(source: Path, target: Path, staging: Path) -> None:
    """Copy ``source`` next to the inbox, then rename it onto ``target``: the sensor never sees half a file."""
    part = staging / target.name
    part.write_bytes(source.read_bytes())
    os.replace(part, target)


def _index_rows(home: Path, document_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The LanceDB rows (version, heading path, text) of these documents."""
    import lancedb

    db = lancedb.connect(str(home / "lancedb"))
    if "chunks" not in db.list_tables().tables:
        return {document: [] for document in document_ids}
    table = db.open_table("chunks")
    rows: dict[str, list[dict[str, Any]]] = {}
    for document in document_ids:
        rows[document] = (table.search().where(f"document_id = '{document}'")
                          .select(["processing_version", "heading_path", "text"]).limit(100_000).to_list())
    return rows


def check_index(home: Path, plan: Plan, new_versions: dict[str, str], markers: dict[str, str]) -> dict[str, Any]:
    """Deleted documents have no rows left; replaced ones only rows of the new version, with its marker text."""
    names = plan.deletions + list(plan.replacements)
    rows = _index_rows(home, [document_id(name) for name in names])
    deleted = {name: len(rows[document_id(name)]) for name in plan.deletions}
    replaced = {}
    for name in plan.replacements:
        found = rows[document_id(name)]
        text = " ".join(f"{row['heading_path']} {row['text']}" for row in found)
        replaced[name] = {"rows": len(found),
                          "versions": sorted({row["processing_version"] for row in found}),
                          "only_new_version": bool(found) and all(
                              row["processing_version"] == new_versions[name] for row in found),
                          "marker_found": markers[name] in text}
    return {"deleted_rows_left": deleted, "deleted_all_gone": not any(deleted.values()),
            "replaced": replaced,
            "replaced_all_new": all(r["only_new_version"] and r["marker_found"] for r in replaced.values())}


def audit_trails(home: Path, stuck: list[dict[str, Any]]) -> dict[str, list[str]]:
    trails = {}
    for entry in stuck:
        events = status_query(home, "SELECT * FROM audit WHERE document_id = ? ORDER BY event_id",
                              (entry["document_id"],))
        trails[entry["name"]] = [f"{e['event_time']} {e['processing_version'][:8]} {e['from_status']} → "
                                 f"{e['to_status']} {e['stage'] or ''} {e['owner'] or ''} {e['message'] or ''}"
                                 .strip() for e in events]
    return trails


def _runs_in_flight(home: Path, last: int) -> int:
    try:
        return runs_in_flight(home / "dagster")
    except Exception:  # noqa: BLE001 - the instance's SQLite busy under a write: keep the last count
        return last


def soak(home: Path, folder: Path, plan: Plan, markers: dict[str, str], update: Any) -> dict[str, Any]:
    side = new_side()
    started = time.time()
    dev, port, ready = start_dev(side, home, folder, "soak", RAY_RAG_CLUSTER_DIR=str(folder / "ray-cluster"))
    result: dict[str, Any] = {"port": port, "webserver_ready_seconds": round(ready, 1)}
    new_versions = {name: md5_of(path)[:16] for name, path in plan.replacements.items()}
    memory, timeline = RayMemory(home), []
    try:
        wait_daemon(home, "SENSOR", dev)
        result["daemon_ready_seconds"] = round(time.time() - started, 1)
        inbox, staging = home / "objects" / "input", home / "soak-staging"
        inbox.mkdir(parents=True, exist_ok=True)
        staging.mkdir(exist_ok=True)
        pending_events = plan.schedule()
        first_drop = time.time()
        mem_total = meminfo()["MemTotal"] / 1024
        mem_min, runs, runs_max, samples, verdict, done_at = mem_total, 0, 0, 0, None, None
        while True:
            now = time.time() - first_drop
            while pending_events and pending_events[0][0] <= now:
                _, kind, number = pending_events.pop(0)
                if kind == "wave":
                    for path in plan.waves[number]:
                        _place(path, inbox / path.name, staging)
                else:
                    for name, path in plan.replacements.items():
                        _place(path, inbox / name, staging)
                    for name in plan.deletions:
                        (inbox / name).unlink()
                result.setdefault("events", []).append({"at_s": round(time.time() - first_drop, 1), "event": kind,
                                                        "wave": number + 1})
            point = memory.sample(now)
            runs = _runs_in_flight(home, runs)
            available = meminfo()["MemAvailable"] / 1024
            rows = status_query(home, "SELECT rowid, * FROM control")
            verdict = assess(plan, rows, new_versions)
            mem_min, runs_max, samples = min(mem_min, available), max(runs_max, runs), samples + 1
            if samples % TIMELINE_EVERY == 1:
                timeline.append({"t": round(now, 1), **point, "mem_available_mb": round(available),
                                 "runs_in_flight": runs, "statuses": verdict["statuses"]})
            ended = len(plan.names) - len(verdict["stuck"])
            worker_peak = max((w["peak_rss_mb"] for w in memory.workers.values()), default=0)
            update(completed=ended, description=(
                f"soak: {len(result.get('events', []))}/{len(plan.waves) + 1} drops; {ended} ended "
                f"({len(verdict['failed'])} failed), {runs} runs in flight, {len(memory.alive)} workers "
                f"(peak {worker_peak:.0f} MB, {memory.summary()['worker_replacements']} recycled), "
                f"MemAvailable {available / 1024:.1f} GB"))
            if not pending_events and not verdict["stuck"]:
                done_at = time.time()
                break
            if not pending_events and now - plan.schedule()[-1][0] > TIMEOUT_SECONDS:
                result["timed_out"] = True
                break
            if dev.poll() is not None:
                raise RuntimeError(f"ray-rag dev exited ({dev.returncode}); see {folder / 'soak-dev.log'}")
            time.sleep(max(0.0, SAMPLE_SECONDS - (time.time() - first_drop - now)))
        # Runs end a little after their documents (asset checks, the remove job): let them finish.
        while _runs_in_flight(home, 1) and time.time() - (done_at or time.time()) < RUNS_DRAIN_SECONDS:
            memory.sample(time.time() - first_drop)
            time.sleep(SAMPLE_SECONDS)
        result.update({
            "first_drop_to_all_ended_seconds": round(done_at - first_drop, 1) if done_at else None,
            "first_drop_to_runs_ended_seconds": round(time.time() - first_drop, 1),
            "samples": samples,
            "mem_total_mb": round(mem_total),
            "mem_available_min_mb": round(mem_min),
            "runs_in_flight_max": runs_max,
            **verdict,
            "stuck_audit": audit_trails(home, verdict["stuck"]),
            "index": check_index(home, plan, new_versions, markers),
            "memory": memory.summary(),
            "pages": sum(row.get("pages") or 0 for row in latest_rows(home) if row["status"] == "COMPLETED"),
        })
    finally:
        result["stop"] = stop_service(dev)
        result["cleanup"] = stop_state_processes(home)
    result["dagster"] = dagster_runs(home / "dagster")
    if result.get("timed_out") or result.get("stuck"):
        result["dev_log_tail"] = (folder / "soak-dev.log").read_text(errors="replace")[-3000:]
    result["timeline"] = timeline
    return result


def documents_for(count: int, folder: Path) -> tuple[list[Path], int]:
    """``count`` distinct PDFs: the shortest real ones of the soak set (``REAL_SHARE``), then generated ones;
    and how many are real."""
    files, _ = datasets.load_manifest()
    real = datasets.fetch("soak")
    real = sorted(real, key=lambda path: (files[path.name].pages, path.name))[:round(count * REAL_SHARE)]
    generated = write_small_pdfs(folder / "generated", count - len(real), prefix="soak")
    return mix(sorted(real), generated), len(real)


def run(quick: bool, documents: int | None = None, out: Path = RESULTS_DIR) -> dict[str, Any]:
    count = documents or (QUICK_DOCUMENTS if quick else DOCUMENTS)
    churn = min(CHURN, max(1, count // 10))
    interval = QUICK_WAVE_INTERVAL_SECONDS if quick else WAVE_INTERVAL_SECONDS
    with scratch_dir("soak") as folder:
        paths, real_count = documents_for(count, folder)
        replacements = write_small_pdfs(folder / "replacements", churn, prefix=REPLACEMENT_PREFIX)
        plan = plan_waves(paths, replacements, WAVES, interval)
        markers = {name: f"{REPLACEMENT_PREFIX} document {index}"
                   for index, name in enumerate(plan.replacements, start=1)}
        with progress_line(f"soak: {count} documents", total=count) as update:
            outcome = soak(folder / "soak-home", folder, plan, markers, update)
    result = {
        "documents": count,
        "real_pdfs": real_count,
        "generated_pdfs": count - real_count,
        "waves": [len(wave) for wave in plan.waves],
        "wave_interval_seconds": interval,
        "churn_after_seconds": plan.churn_after_seconds,
        "replaced": sorted(plan.replacements),
        "deleted": plan.deletions,
        "new_code": str(new_side().code),
        **outcome,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    # results.json keeps the summary; the timeline (for the plot) stays in soak.json.
    return {key: value for key, value in result.items() if key != "timeline"}
