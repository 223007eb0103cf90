"""Old vs new code side by side, and what the many-documents benchmarks observe about the machine.

Both sides run as subprocesses of the same venv, each with its own state folder (``RAY_RAG_HOME``) and Dagster
instance (``DAGSTER_HOME=<home>/dagster``):

- **old**: the code of commit ``OLD_COMMIT`` (one run per document, a private Ray per run), materialized with
  ``git archive`` into a scratch folder and put first on ``PYTHONPATH``;
- **new**: the working tree's ``ray_rag_dagster`` (``RAY_RAG_BENCH_NEW_CODE`` overrides the folder).

The subprocesses run with a scratch folder as working directory: Python puts the working directory first on
``sys.path``, and the repo root there would shadow ``PYTHONPATH`` (the venv's editable install only comes after
both). Dagster's code servers, run workers and Ray's workers inherit the same environment.

A new-style state folder keeps a shared local Ray running after the command that started it; every process
whose environment or command line names the scratch state folder is ours, and ``stop_state_processes`` ends
them by PID (never ``ray stop``: other people's clusters run on the same machine).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, progress_line

OLD_COMMIT = "cd27f23660eb914398992fc879677ff6e8da34bd"
TIMEOUT_SECONDS = 3600
CLI = "from ray_rag_dagster.cli import main; main()"
TERMINAL = ("COMPLETED", "FAILED")
STAGES = ("extract", "chunk", "enrich", "embed", "load")
ASSET_STAGE = {"extracted_pages": "extract", "chunks": "chunk", "enriched_chunks": "enrich",
               "embeddings": "embed", "vector_index_entries": "load"}


# --- the two sides --------------------------------------------------------------------------------------------


@dataclass
class Side:
    name: str  # "old" or "new"
    code: Path  # the folder holding ``ray_rag_dagster/``, first on PYTHONPATH

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """The environment of this side's commands on the state folder ``home`` (bench/ importable too)."""
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("RAY_RAG_", "RAY_ADDRESS", "DAGSTER_HOME", "PYTHONPATH"))}
        env.update({
            "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(self.code), str(REPO)])),
            "RAY_RAG_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        })
        for key in ("RAY_RAG_PARTITIONS_PER_RUN", "RAY_RAG_RAY_NUM_CPUS"):  # knobs the caller may pass through
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(extra)
        return env

    def prepare_home(self, home: Path) -> None:
        """The side's Dagster instance, as its own code sets it up for a user, with its SQLite storages created
        now, from one process: a webserver, a daemon and this harness creating them at once can stamp the schema
        twice ("alembic_version has more than one head")."""
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        config = home / "dagster" / "dagster.yaml"
        if self.has_module("ray_rag_dagster.dagster_home"):
            # The code writes its own dagster.yaml (event-log storage, run queue, monitoring): a bench that wrote
            # one first would measure Dagster's defaults instead of the product.
            code = ("import dagster as dg; from ray_rag_dagster.dagster_home import prepare_dagster_home; "
                    "from ray_rag_dagster.settings import Settings; "
                    "dg.DagsterInstance.from_config(str(prepare_dagster_home(Settings()))).dispose()")
            subprocess.run([sys.executable, "-c", code], env=self.env(home), cwd=home, check=True,
                           capture_output=True)
            return
        if not config.exists():
            config.write_text("telemetry:\n  enabled: false\n")
        import dagster as dg

        with dg.DagsterInstance.from_config(str(home / "dagster")):
            pass

    def build_embedder(self, home: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        """Build the side's embedder once in ``home`` before a timed ingest (distil the static model, or export
        MiniLM to ONNX and quantize it): a one-time step of an install, not part of ingesting."""
        code = ("from ray_rag_dagster.backends import build_embedder; from ray_rag_dagster.settings import Settings; "
                "build_embedder(Settings())")
        with progress_line(f"{self.name}: building its embedder (once, not timed)"):
            subprocess.run([sys.executable, "-c", code], env={**self.env(home), **(env or {})}, cwd=cwd, check=True,
                           capture_output=True)

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-c", CLI, *args]

    def has_module(self, module: str) -> bool:
        return (self.code / (module.replace(".", "/") + ".py")).is_file() or (
            self.code / module.replace(".", "/") / "__init__.py").is_file()


def new_side() -> Side:
    return Side("new", Path(os.environ.get("RAY_RAG_BENCH_NEW_CODE", REPO)).resolve())


@contextmanager
def old_side(folder: Path) -> Iterator[Side]:
    """The old code (``OLD_COMMIT``) unpacked under ``folder/old-code``."""
    code = folder / "old-code"
    code.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "ray_rag_dagster"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    # The venv's installed metadata declares the new code's docling plugin entry point, a module the old tree
    # lacks (docling then fails to build its converter). Metadata first on the old side's path shadows it:
    # importlib.metadata keeps the first distribution of a name.
    metadata = code / "ray_rag_dagster-0.0.0.dist-info"
    metadata.mkdir(exist_ok=True)
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: ray-rag-dagster\nVersion: 0.0.0\n")
    yield Side("old", code)


def require_direct_path(side: Side) -> None:
    if not side.has_module("ray_rag_dagster.compute.flow"):
        raise RuntimeError(
            f"{side.code}/ray_rag_dagster/compute/flow.py is missing: the direct path "
            "(ray_rag_dagster.compute.flow.run_stages, issue 8's new core) has not landed in this tree yet")


# --- the machine ----------------------------------------------------------------------------------------------


def cpu_sample() -> tuple[int, int]:
    """(total, busy) jiffies of all cores from /proc/stat; busy = total - idle - iowait."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total, total - fields[3] - fields[4]


def cpu_fraction(start: tuple[int, int], end: tuple[int, int]) -> float | None:
    total = end[0] - start[0]
    return round((end[1] - start[1]) / total, 3) if total > 0 else None


def meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        values[key] = int(rest.split()[0])  # kB
    return values


def mem_available_fraction() -> float:
    info = meminfo()
    return info["MemAvailable"] / info["MemTotal"]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def gcs_servers() -> list[int]:
    """PIDs of Ray GCS servers on the machine: one per running Ray cluster."""
    return [pid for pid in _pids() if _read(f"/proc/{pid}/comm").strip() == b"gcs_server"]


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in kB: its resident memory now and the peak the kernel recorded for it."""
    values = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, rest = line.partition(b":")
        if key in (b"VmRSS", b"VmHWM"):
            values[key] = int(rest.split()[0])
    return (values[b"VmRSS"], values[b"VmHWM"]) if len(values) == 2 else None


def ray_processes(home: Path) -> dict[str, list[int]]:
    """The Ray processes of the cluster started for ``home``: stage workers (Ray sets their process title to
    ``ray::StageWorker[.method]``), raylets and GCS servers."""
    found: dict[str, list[int]] = {"stage_worker": [], "raylet": [], "gcs_server": []}
    for pid in _pids():
        comm = _read(f"/proc/{pid}/comm").strip()
        role = comm.decode() if comm in (b"raylet", b"gcs_server") else None
        if role is None and _read(f"/proc/{pid}/cmdline").startswith(b"ray::StageWorker"):
            role = "stage_worker"
        if role is not None and belongs_to(pid, home):
            found[role].append(pid)
    return found


def belongs_to(pid: int, home: Path) -> bool:
    """Whether the process was started for the state folder ``home`` (its environment or command line)."""
    marker = str(home).encode()
    return marker in _read(f"/proc/{pid}/environ") or marker in _read(f"/proc/{pid}/cmdline")


def state_processes(home: Path) -> list[int]:
    own = os.getpid()
    return [pid for pid in _pids() if pid != own and belongs_to(pid, home)]


def stop_pids(pids: list[int], grace: float = 20.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left. Returns the PIDs that needed SIGKILL."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    while alive and time.time() < deadline:
        time.sleep(0.25)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return alive


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[0]
    if state == b"Z":  # a zombie child of ours: reap it
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def stop_state_processes(home: Path) -> dict[str, Any]:
    """End what is still running for ``home`` (a shared Ray, a code server): by PID, SIGTERM first."""
    pids = state_processes(home)
    killed = stop_pids(pids) if pids else []
    return {"left_running": len(pids), "needed_sigkill": len(killed)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reset_signals() -> None:
    # A child of a non-interactive shell may inherit SIGINT/SIGTERM as ignored (facts: `dagster dev`).
    os.setsid()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


def start_service(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """A long-running command in its own session with default signal handling, output to ``log``."""
    handle = log.open("w")
    try:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_reset_signals)
    finally:
        handle.close()


def stop_service(process: subprocess.Popen, grace: float = 60.0) -> dict[str, Any]:
    """SIGTERM to the PID, wait; then whatever is left of its session (it owns the session: setsid)."""
    started = time.time()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    leftovers = [pid for pid in _pids() if _session_of(pid) == process.pid]
    killed = stop_pids(leftovers) if leftovers else []
    return {"stop_seconds": round(time.time() - started, 1), "session_leftovers": len(leftovers),
            "needed_sigkill": len(killed)}


def _session_of(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(b")", 1)[-1].split()
    return int(fields[3])  # state ppid pgrp session ...


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> float:
    """Seconds until ``url`` answers (any HTTP status)."""
    started = time.time()
    while time.time() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.time() - started
        except urllib.error.HTTPError:
            return time.time() - started
        except (OSError, http.client.HTTPException):  # not up yet (or not HTTP: another service took the port)
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_dev(side: Side, home: Path, folder: Path, name: str, attempts: int = 3,
              **env: str) -> tuple[subprocess.Popen, int, float]:
    """``ray-rag dev --port <free>`` until its webserver answers (another free port if one was taken meanwhile).
    ``env`` is added to the side's environment. Returns the process, the port and the seconds until the
    webserver answered."""
    side.prepare_home(home)
    for attempt in range(1, attempts + 1):
        port = free_port()
        started = time.time()
        log = folder / f"{name}-dev.log"
        process = start_service(side.cli("dev", "--port", str(port)), side.env(home, **env), folder, log)
        try:
            wait_http(f"http://127.0.0.1:{port}/server_info", 300, process)
            _check_dagster(port)
            return process, port, time.time() - started
        except (RuntimeError, TimeoutError, OSError, ValueError):
            stop_service(process)
            stop_state_processes(home)
            if attempt == attempts:
                raise RuntimeError(f"ray-rag dev did not serve on port {port}; see {log}: "
                                   f"{log.read_text(errors='replace')[-1500:]}") from None
    raise AssertionError("unreachable")


def _check_dagster(port: int) -> None:
    """The server on ``port`` is Dagster's (not a service that took the free port first)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as response:
        info = json.loads(response.read())
    if "dagster_webserver_version" not in info and "dagit_version" not in info:
        raise ValueError(f"port {port} answers, but not as the Dagster webserver: {info}")


def graphql(port: int, query: str, variables: dict[str, Any] | None = None, timeout: float = 300) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.loads(response.read())
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


# --- what the state folder says ---------------------------------------------------------------------------------


def _status_db(home: Path) -> sqlite3.Connection | None:
    path = home / "status.sqlite"
    if not path.is_file():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    return db


def status_query(home: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a read-only query on the state folder's status store (none while it has no schema yet)."""
    db = _status_db(home)
    if db is None:
        return []
    try:
        return [dict(row) for row in db.execute(sql, parameters).fetchall()]
    except sqlite3.OperationalError:  # created but no schema yet
        return []
    finally:
        db.close()


def latest_rows(home: Path) -> list[dict[str, Any]]:
    """The control table's latest row per document (as ``ray-rag status`` shows it)."""
    return status_query(
        home, "SELECT * FROM control c WHERE rowid = (SELECT rowid FROM control WHERE document_id = c.document_id"
        " ORDER BY updated_at DESC, rowid DESC LIMIT 1)")


def status_counts(home: Path) -> dict[str, int]:
    return dict(Counter(row["status"] for row in latest_rows(home)))


def completion_times(home: Path) -> dict[str, float]:
    """Epoch seconds at which each document's latest version turned COMPLETED (audit table, 1 s resolution)."""
    from datetime import datetime

    db = _status_db(home)
    if db is None:
        return {}
    try:
        rows = db.execute("SELECT document_id, MAX(event_time) AS at FROM audit WHERE to_status = 'COMPLETED'"
                          " GROUP BY document_id").fetchall()
    finally:
        db.close()
    return {row["document_id"]: datetime.fromisoformat(row["at"]).timestamp() for row in rows}


def stage_seconds(side: Side, home: Path, cwd: Path) -> dict[str, Any]:
    """Seconds spent in each stage, summed over documents (the first source that has them; the others too).

    Sources: ``ray-rag status --json`` (the new CLI: per-document ``stage_seconds``, or ``stages`` with
    ``seconds``), the ``seconds`` metadata of every materialization in the Dagster instance, and the status
    table's per-document total. With stages overlapping, these sums exceed the wall time.
    """
    sources: dict[str, dict[str, float]] = {}
    try:
        completed = subprocess.run(side.cli("status", "--json"), env=side.env(home), cwd=cwd, capture_output=True,
                                   text=True, timeout=300)
        if completed.returncode == 0:
            sources["ray-rag status --json"] = _stage_seconds_from_status_json(json.loads(completed.stdout))
    except (ValueError, subprocess.TimeoutExpired):
        pass
    try:
        sources["dagster materialization metadata"] = dagster_stage_seconds(home / "dagster")
    except Exception as exc:  # noqa: BLE001 - another source may have them
        sources["dagster materialization metadata"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}  # type: ignore
    total = sum(row.get("seconds") or 0 for row in latest_rows(home))
    sources["status table (total only)"] = {"total": round(total, 1)}
    for name, sums in sources.items():
        if any(stage in sums for stage in STAGES):
            return {"source": name, **sums, "other_sources": {k: v for k, v in sources.items() if k != name}}
    return {"source": "status table (total only)", **sources["status table (total only)"],
            "other_sources": sources}


def _stage_seconds_from_status_json(data: Any) -> dict[str, float]:
    documents = data.get("documents", data) if isinstance(data, dict) else data
    sums: Counter[str] = Counter()
    for document in documents if isinstance(documents, list) else []:
        if not isinstance(document, dict):
            continue
        per_stage = document.get("stage_seconds") or document.get("stages") or {}
        for stage, value in per_stage.items() if isinstance(per_stage, dict) else []:
            if isinstance(value, dict):
                value = value.get("seconds")
            if isinstance(value, (int, float)):
                sums[stage] += float(value)
    if not sums:
        return {}
    return {**{stage: round(value, 1) for stage, value in sums.items()}, "total": round(sum(sums.values()), 1)}


def dagster_stage_seconds(dagster_home: Path) -> dict[str, float]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        sums: dict[str, float] = {}
        for asset, stage in ASSET_STAGE.items():
            records, cursor = [], None
            while True:
                page = instance.fetch_materializations(dg.AssetKey(asset), limit=5_000, cursor=cursor)
                records += page.records
                if not page.has_more:
                    break
                cursor = page.cursor
            seconds = 0.0
            for record in records:
                materialization = record.asset_materialization
                value = materialization.metadata.get("seconds") if materialization else None
                seconds += float(value.value) if value is not None else 0.0
            if records:
                sums[stage] = round(seconds, 1)
    if sums:
        sums["total"] = round(sum(sums.values()), 1)
    return sums


def dagster_runs(dagster_home: Path) -> dict[str, Any]:
    """Runs recorded in a Dagster instance, by status, with their launch and run times."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records()
        failures = [_failure_message(instance, r.dagster_run.run_id) for r in records
                    if r.dagster_run.status.value == "FAILURE"][:5]
    statuses = Counter(record.dagster_run.status.value for record in records)
    queued = [(r.start_time or 0) - r.create_timestamp.timestamp() for r in records if r.start_time]
    running = [(r.end_time or 0) - r.start_time for r in records if r.start_time and r.end_time]
    return {
        "runs": len(records),
        "by_status": dict(statuses),
        "create_to_start_seconds_sum": round(sum(queued), 1),
        "run_seconds_sum": round(sum(running), 1),
        **({"failures": failures} if failures else {}),
    }


def wait_daemon(home: Path, daemon_type: str, process: subprocess.Popen, timeout: float = 300) -> float:
    """Seconds until the Dagster daemon of ``home`` reports a heartbeat for ``daemon_type`` (SENSOR, BACKFILL)."""
    import dagster as dg

    started = time.time()
    while time.time() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before its daemon started")
        try:
            with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
                if daemon_type in instance.get_daemon_heartbeats():
                    return time.time() - started
        except Exception:  # noqa: BLE001 - storage still being set up: ask again
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no {daemon_type} daemon heartbeat within {timeout} s")


def runs_in_flight(dagster_home: Path) -> int:
    """Runs not yet ended (queued, starting, started, canceling)."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records()
    return sum(1 for r in records if r.dagster_run.status.value not in ("SUCCESS", "FAILURE", "CANCELED"))


def _failure_message(instance: Any, run_id: str) -> str:
    """The first step or run failure of a run, in one line."""
    from dagster import DagsterEventType

    for kind in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
        for entry in instance.all_logs(run_id, of_type=kind):
            event = entry.dagster_event
            data = getattr(event, "event_specific_data", None)
            error = getattr(data, "error", None)
            while getattr(error, "cause", None) is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            text = (getattr(error, "message", None) or event.message or entry.user_message or "").strip()
            return f"{event.step_key or 'run'}: {text.splitlines()[0] if text else kind.value}"[:300]
    return "no failure event"


# --- running a command while watching the state folder ----------------------------------------------------------


@dataclass
class Watch:
    """Samples taken every ``interval`` seconds while something runs."""

    home: Path
    interval: float = 0.5
    mem_min: float = 1.0
    mem_start: float = field(default_factory=mem_available_fraction)
    gcs_max: int = 0
    gcs_ours_max: int = 0
    gcs_before: int = field(default_factory=lambda: len(gcs_servers()))
    samples: int = 0

    def sample(self) -> None:
        self.samples += 1
        self.mem_min = min(self.mem_min, mem_available_fraction())
        servers = gcs_servers()
        self.gcs_max = max(self.gcs_max, len(servers))
        self.gcs_ours_max = max(self.gcs_ours_max, sum(belongs_to(pid, self.home) for pid in servers))

    def summary(self) -> dict[str, Any]:
        return {
            "mem_available_start_pct": round(100 * self.mem_start, 1),
            "mem_available_min_pct": round(100 * self.mem_min, 1),
            "mem_total_gb": round(meminfo()["MemTotal"] / 1024**2, 1),
            "ray_clusters_before": self.gcs_before,
            "ray_clusters_max": self.gcs_max,
            "ray_clusters_of_this_run_max": self.gcs_ours_max,
            "samples": self.samples,
        }


def run_ingest(side: Side, home: Path, paths: list[Path], cwd: Path, timeout: float,
               on_tick: Any = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``ray-rag ingest PATHS`` on a fresh state folder (``env`` added to the side's environment): wall seconds,
    CPU share, statuses, memory, clusters."""
    side.prepare_home(home)
    log = cwd / f"{side.name}-ingest-{home.name}.log"
    watch = Watch(home)
    cpu_start = cpu_sample()
    started = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(side.cli("ingest", *map(str, paths)), env=side.env(home, **(env or {})), cwd=cwd,
                                   stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_reset_signals)
        try:
            while process.poll() is None:
                watch.sample()
                if on_tick is not None:
                    on_tick(status_counts(home), time.perf_counter() - started)
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{side.name} ingest still running after {timeout} s; log {log}")
                time.sleep(watch.interval)
        finally:
            if process.poll() is None:
                stop_service(process, grace=30)
    wall = time.perf_counter() - started
    cpu_end = cpu_sample()
    counts = status_counts(home)
    result = {
        "wall_seconds": round(wall, 1),
        "cpu_busy_fraction": cpu_fraction(cpu_start, cpu_end),
        "exit_code": process.returncode,
        "statuses": counts,
        "pages_indexed": sum(row.get("pages") or 0 for row in latest_rows(home)),
        **watch.summary(),
    }
    if process.returncode != 0 or counts.get("COMPLETED", 0) != len(paths):
        result["log_tail"] = log.read_text(errors="replace")[-2000:]
    return result


def completed_all(counts: dict[str, int], expected: int) -> bool:
    return counts.get("COMPLETED", 0) == expected and sum(counts.values()) == expected


def run_flow_child(side: Side, home: Path, folder: Path, spec: dict[str, Any], name: str,
                   stop_after: bool = True, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m bench.flow_child`` on ``side``'s code and state folder ``home`` (``env`` added to the
    side's environment); its JSON result."""
    side.prepare_home(home)
    spec_path, out_path, log = folder / f"{name}-spec.json", folder / f"{name}-out.json", folder / f"{name}.log"
    spec_path.write_text(json.dumps({"home": str(home), **spec}))
    try:
        with log.open("w") as handle:
            completed = subprocess.run([sys.executable, "-m", "bench.flow_child", str(spec_path), str(out_path)],
                                       env=side.env(home, **(env or {})), cwd=folder, stdout=handle,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=TIMEOUT_SECONDS)
    finally:
        if stop_after:
            stop_state_processes(home)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} failed ({completed.returncode}): {log.read_text(errors='replace')[-2000:]}")
    return json.loads(out_path.read_text())
