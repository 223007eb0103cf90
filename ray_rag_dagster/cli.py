"""``ray-rag``: ingest PDFs, search them, and see where every document is.

All local state lives in one folder, ``$RAY_RAG_HOME`` (default ``~/.ray-rag``): the object store (with the
inbox at ``objects/input/``), the status database, the LanceDB index and the Dagster instance.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ray_rag_dagster.aws.cli import aws_app
from ray_rag_dagster.cli_search import search, serve, status
from ray_rag_dagster.evaluation import evaluate
from ray_rag_dagster.passages import snippet  # noqa: F401 - re-exported (tests, scripts)
from ray_rag_dagster.settings import Settings, load_settings

app = typer.Typer(help="Document RAG ingestion: Dagster assets, compute on Ray.", no_args_is_help=True)
app.add_typer(aws_app, name="aws")
app.command()(evaluate)
console = Console()

DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def prepare_dagster_home(settings: Settings) -> Path:
    """Point Dagster at the project's state folder unless the user chose another ``DAGSTER_HOME``."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


@dataclass
class IngestOutcome:
    path: Path
    document_id: str
    status: str
    detail: str = ""
    seconds: float = 0.0


def ingest_paths(settings: Settings, paths: list[Path], *, reprocess: bool = False) -> list[IngestOutcome]:
    """Copy PDFs into the inbox and materialize them now, one run per document.

    Each version is claimed in the status store *before* it lands in the inbox, so a running sensor sees
    it as taken and never requests a second run for it.
    """
    import dagster as dg

    from ray_rag_dagster.backends import build_object_store, build_status_store
    from ray_rag_dagster.backends.status_store import COMPLETED
    from ray_rag_dagster.defs import build_definitions
    from ray_rag_dagster.defs.assets import OWNER_TAG, TRIGGER_TAG
    from ray_rag_dagster.defs.partitions import documents
    from ray_rag_dagster.ids import document_id_for, version_of

    prepare_dagster_home(settings)
    instance = dg.DagsterInstance.get()
    store = build_object_store(settings)
    status = build_status_store(settings)
    owner = f"cli-{uuid.uuid4().hex[:12]}"
    outcomes: list[IngestOutcome] = []
    claimed: list[tuple[IngestOutcome, str]] = []
    for path in paths:
        key = f"input/{path.name}"
        document_id = document_id_for(key)
        if not path.is_file():
            outcomes.append(IngestOutcome(path, document_id, "FAILED", f"{path}: no such file"))
            continue
        data = path.read_bytes()
        version = version_of(hashlib.md5(data).hexdigest())
        row = status.register(document_id, version, key)
        if row.status == COMPLETED and not reprocess:
            outcomes.append(IngestOutcome(path, document_id, "UNCHANGED", "this version is already indexed"))
            continue
        claim = status.claim(document_id, version, owner, settings.lease_seconds, reprocess=reprocess)
        if not claim.granted:
            outcomes.append(IngestOutcome(path, document_id, "SKIPPED", claim.reason))
            continue
        store.put_bytes(key, data)
        outcome = IngestOutcome(path, document_id, "PENDING")
        outcomes.append(outcome)
        claimed.append((outcome, version))

    if not claimed:
        return outcomes
    new = [outcome.document_id for outcome, _ in claimed]
    instance.add_dynamic_partitions(documents.name, [key for key in new if not instance.has_dynamic_partition(documents.name, key)])
    job = build_definitions(settings).resolve_job_def("ingest_document")

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("ingesting", total=len(claimed))
        for outcome, version in claimed:
            name = outcome.path.name
            stop = threading.Event()

            def follow_stage(document_id: str = outcome.document_id, name: str = name, version: str = version) -> None:
                # The run executes in this thread; show the stage the status store says it reached.
                while not stop.wait(0.5):
                    row = status.get(document_id, version)
                    stage = row.current_stage if row and row.current_stage else "starting"
                    progress.update(task, description=f"{name}: {stage} done")

            watcher = threading.Thread(target=follow_stage, daemon=True)
            progress.update(task, description=f"{name}: starting")
            watcher.start()
            started = time.perf_counter()
            result = job.execute_in_process(
                instance=instance,
                partition_key=outcome.document_id,
                tags={OWNER_TAG: owner, TRIGGER_TAG: "cli"},
                # The summary table reports failures; Dagster's event log keeps the details.
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                raise_on_error=False,
            )
            stop.set()
            watcher.join()
            outcome.seconds = time.perf_counter() - started
            row = status.get(outcome.document_id, version)
            outcome.status = row.status if row else ("COMPLETED" if result.success else "FAILED")
            outcome.detail = (row.error or "") if row else ""
            progress.advance(task)
    return outcomes


def _print_outcomes(settings: Settings, outcomes: list[IngestOutcome]) -> None:
    from ray_rag_dagster.backends import build_status_store

    status = build_status_store(settings)
    table = Table(title="Ingest summary")
    for column in ("file", "document", "status", "pages", "chunks", "vectors", "seconds"):
        numeric = column in ("pages", "chunks", "vectors", "seconds")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    for outcome in outcomes:
        row = status.get(outcome.document_id)
        counts = row.counts if row else {}
        style = {"COMPLETED": "green", "FAILED": "red"}.get(outcome.status, "yellow")
        table.add_row(
            outcome.path.name,
            outcome.document_id,
            f"[{style}]{outcome.status}[/]",
            *(str(int(counts[name])) if name in counts else "" for name in ("pages", "chunks", "vectors")),
            f"{outcome.seconds:.1f}" if outcome.seconds else "",
            outcome.detail,
        )
    console.print(table)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDF files to ingest.")],
    reprocess: Annotated[bool, typer.Option(help="Process versions that are already indexed again.")] = False,
) -> None:
    """Copy PDFs into the inbox and run all five stages for them now."""
    settings = load_settings()
    outcomes = ingest_paths(settings, paths, reprocess=reprocess)
    _print_outcomes(settings, outcomes)
    if any(outcome.status == "FAILED" for outcome in outcomes):
        raise typer.Exit(1)


# search, status and serve live in cli_search (typer and rich only at import: they start fast).
app.command()(search)
app.command()(status)
app.command()(serve)


DEMO_QUESTIONS = ("inclusion criteria age", "contact information: phone and email of the site coordinator")


@app.command()
def demo() -> None:
    """Generate the sample PDFs, ingest them, and run a few searches (the README's first command)."""
    from ray_rag_dagster.samples import write_samples

    settings = load_settings()
    console.rule(f"[bold]ray-rag demo[/] — state in {settings.home}")
    with tempfile.TemporaryDirectory() as folder:
        samples = write_samples(Path(folder))
        console.print(f"Generated {len(samples)} sample PDFs: {', '.join(path.name for path in samples)}")
        outcomes = ingest_paths(settings, samples)
        _print_outcomes(settings, outcomes)
    for question in DEMO_QUESTIONS:
        search(question, k=3, as_json=False)
    console.print("Seeded PII (emails, phone numbers, SSNs) shows as [REDACTED] above. "
                  "Next: `ray-rag ingest ../shared/data/pdfs/clinical/*.pdf`, `ray-rag dev` for the Dagster UI.")
    if any(outcome.status == "FAILED" for outcome in outcomes):
        raise typer.Exit(1)


@app.command()
def dev(port: Annotated[int, typer.Option(help="Dagster UI port.")] = 3000) -> None:
    """Start the Dagster UI and daemon (sensor included) on this project's state folder."""
    settings = load_settings()
    prepare_dagster_home(settings)
    binaries = Path(sys.executable).parent
    common = ["-m", "ray_rag_dagster.defs"]
    # Started as two processes that handle SIGTERM themselves (see facts: `dagster dev` in the background
    # ignores signals); stopped together on Ctrl-C.
    processes = [
        subprocess.Popen([str(binaries / "dagster-webserver"), *common, "-h", "127.0.0.1", "-p", str(port)]),
        subprocess.Popen([str(binaries / "dagster-daemon"), "run", *common]),
    ]
    console.print(f"Dagster UI on http://127.0.0.1:{port} — drop PDFs into {settings.inbox_dir}; Ctrl-C stops.")
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


@app.command()
def reset(yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete all local state (objects, status, index, Dagster instance)."""
    settings = load_settings()
    if yes or typer.confirm(f"Delete {settings.home}?"):
        shutil.rmtree(settings.home, ignore_errors=True)


def main() -> None:
    app()
