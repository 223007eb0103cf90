"""``ray-rag``: ingest PDFs, search them, and see where every document is.

All local state lives in one folder, ``$RAY_RAG_HOME`` (default ``~/.ray-rag``): the object store (with the
inbox at ``objects/input/``), the status database, the LanceDB index and the Dagster instance.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ray_rag_dagster.aws.cli import aws_app
from ray_rag_dagster.cli_search import search, serve, status
from ray_rag_dagster.dagster_home import prepare_dagster_home
from ray_rag_dagster.evaluation.cli import evaluate
from ray_rag_dagster.ids import OldStateError, check_current_ids
from ray_rag_dagster.ingest import IngestOutcome
from ray_rag_dagster.passages import snippet  # noqa: F401 - re-exported (tests, scripts)
from ray_rag_dagster.settings import Settings, load_settings

app = typer.Typer(help="Document RAG ingestion: Dagster assets, compute on Ray.", no_args_is_help=True)
app.add_typer(aws_app, name="aws")
app.command()(evaluate)
console = Console()

def _progress() -> tuple[Progress, Callable[[int, int, str], None]]:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task("ingesting", total=None)

    def update(done: int, total: int, where: str) -> None:
        progress.update(task, completed=done, total=total, description=f"documents done ({where or 'starting'})")

    return progress, update


@contextmanager
def _old_state_exits() -> Iterator[None]:
    """A state of older document ids ends the command with the message that names `ray-rag reset`."""
    try:
        yield
    except OldStateError as error:
        console.print(f"[red]{error}[/]", overflow="fold")
        raise typer.Exit(1) from None


def ingest_with_progress(settings: Settings, paths: list[Path], *, reprocess: bool = False) -> list[IngestOutcome]:
    from ray_rag_dagster.ingest import ingest_paths

    progress, update = _progress()
    with _old_state_exits(), progress:
        return ingest_paths(settings, paths, reprocess=reprocess, progress=update)


def _print_outcomes(settings: Settings, outcomes: list[IngestOutcome]) -> None:
    """One line per file that fits 80 columns; reasons (failures, skips) as notes under the table."""
    from ray_rag_dagster.backends import build_status_store

    status = build_status_store(settings)
    wide = console.width >= 110
    table = Table(title="Ingest summary")
    table.add_column("file", overflow="fold", ratio=1)
    if wide:
        table.add_column("document", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("pages", "chunks", "seconds"):
        table.add_column(column, justify="right", no_wrap=True)
    notes = []
    for outcome in outcomes:
        row = status.get(outcome.document_id)
        counts = row.counts if row else {}
        style = {"COMPLETED": "green", "FAILED": "red"}.get(outcome.status, "yellow")
        table.add_row(
            outcome.path.name,
            *([outcome.document_id] if wide else []),
            f"[{style}]{outcome.status}[/]",
            *(str(int(counts[name])) if name in counts else "" for name in ("pages", "chunks")),
            f"{outcome.seconds:.1f}" if outcome.seconds else "",
        )
        if outcome.detail:
            detail = outcome.detail.removeprefix(f"{outcome.path.name}: ")
            notes.append(f"[{style}]{outcome.path.name}[/]: {detail}")
    console.print(table)
    for note in notes:
        console.print(note, overflow="fold")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDF files to ingest.")],
    reprocess: Annotated[bool, typer.Option(help="Process versions that are already indexed again.")] = False,
) -> None:
    """Copy PDFs into the inbox and run all five stages for them now."""
    settings = load_settings()
    outcomes = ingest_with_progress(settings, paths, reprocess=reprocess)
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
        outcomes = ingest_with_progress(settings, samples)
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
    from ray_rag_dagster.backends import build_status_store
    from ray_rag_dagster.compute.cluster import LocalCluster

    settings = load_settings()
    with _old_state_exits():  # the sensor would refuse every tick; say so before starting anything
        check_current_ids(row.document_id for row in build_status_store(settings).documents())
    prepare_dagster_home(settings)
    if not settings.ray_address:
        # One Ray for the whole session: every run joins it and finds the warm workers there.
        address = LocalCluster().acquire(settings)
        console.print(f"Ray cluster at {address} (shared by every run; stopped when the last user exits)")
    binaries = Path(sys.executable).parent
    common = ["-m", "ray_rag_dagster.defs"]
    # Started as two processes that handle SIGTERM themselves (see facts: `dagster dev` in the background
    # ignores signals); stopped together on Ctrl-C.
    processes = [
        subprocess.Popen([str(binaries / "dagster-webserver"), *common, "-h", "127.0.0.1", "-p", str(port)]),
        subprocess.Popen([str(binaries / "dagster-daemon"), "run", *common]),
    ]
    console.print(f"Dagster UI on http://127.0.0.1:{port} — drop PDFs into {settings.inbox_dir}; Ctrl-C stops.")
    # SIGTERM (a service manager, a benchmark) stops the children too, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))
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


def _remove_all_but(folder: Path, keep: list[Path]) -> None:
    """Delete everything under ``folder`` except the paths in ``keep`` (and the folders that lead to them)."""
    for child in folder.iterdir() if folder.is_dir() else ():
        if child in keep:
            continue
        if any(child in kept.parents for kept in keep):
            _remove_all_but(child, keep)
        elif child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="Delete the inbox PDFs and cached models too.")] = False,
) -> None:
    """Delete the derived state (outputs, status, index, Dagster instance) and stop the local Ray cluster.

    The inbox PDFs and the exported models stay, so the next `ingest` or `dev` rebuilds the rest from them.
    """
    from ray_rag_dagster.compute.cluster import LocalCluster

    settings = load_settings()
    what = str(settings.home) if everything else f"everything in {settings.home} but the inbox PDFs and models"
    if not (yes or typer.confirm(f"Delete {what} and stop the local Ray cluster?")):
        raise typer.Exit(1)
    LocalCluster().stop()
    if everything:
        shutil.rmtree(settings.home, ignore_errors=True)
        return
    _remove_all_but(settings.home, [settings.inbox_dir, settings.models_dir])
    console.print(f"Kept the inbox, {settings.inbox_dir}: `ray-rag dev` (its sensor) or "
                  f"`ray-rag ingest {settings.inbox_dir}/*.pdf` rebuilds the rest.")


def main() -> None:
    app()
