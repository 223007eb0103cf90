"""``ray-rag evaluate``: the evaluation's scores as a table (or JSON), pipeline beside the baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ray_rag_dagster.evaluation.metrics import MRR_DEPTH, RECALL_K
from ray_rag_dagster.evaluation.retrievers import BASELINE_WINDOW_CHARS
from ray_rag_dagster.evaluation.run import DocumentsNotIndexed, EvaluationReport, run_evaluation
from ray_rag_dagster.settings import Settings


def print_report(report: EvaluationReport, console: Console) -> None:
    pipeline, baseline = (run.name for run in report.systems)
    weight = report.settings_summary["search_text_weight"]
    table = Table(
        title=f"Retrieval: recall@{report.k} and MRR@{MRR_DEPTH}, pipeline ({report.settings_summary['vector_index']}, "
        f"text weight {weight}) vs BM25 over {BASELINE_WINDOW_CHARS}-character windows"
    )
    table.add_column("questions", no_wrap=True)
    table.add_column("n", justify="right")
    for system in ("pipeline", "BM25"):
        table.add_column(f"{system} R@{report.k}", justify="right")
        table.add_column(f"{system} MRR", justify="right")
    for group, questions in report.groups():
        ours, theirs = report.scores(pipeline, questions), report.scores(baseline, questions)

        def cell(value: float, other: float) -> str:
            return f"[green]{value:.3f}[/]" if value > other else f"{value:.3f}"

        table.add_row(
            group, str(ours.questions),
            cell(ours.recall, theirs.recall), cell(ours.mrr, theirs.mrr),
            cell(theirs.recall, ours.recall), cell(theirs.mrr, ours.mrr),
            end_section=group == "overall" or group == report.documents[-1],
        )
    console.print(table)
    if report.unanswerable:
        console.print(f"{len(report.unanswerable)} questions left out: their passage is not in the PDF's text layer.")


def evaluate(
    k: Annotated[int, typer.Option("-k", help="Recall cut-off: recall@k.")] = RECALL_K,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    answer_keys: Annotated[
        Path | None, typer.Option(help="Folder of the USDM answer keys (default: shared/data/groundtruth/clinical).")
    ] = None,
) -> None:
    """Retrieval quality on the clinical protocols' answer keys: the index vs a BM25 baseline."""
    console = Console(stderr=as_json)
    try:
        report = run_evaluation(Settings(), answer_keys, k=k)
    except (DocumentsNotIndexed, FileNotFoundError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    for name, why in report.missing.items():
        console.print(f"[yellow]{name} not evaluated: {why} (ray-rag ingest ../shared/data/pdfs/clinical/{name})[/]")
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, console)
