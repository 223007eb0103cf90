"""Smoke test of the benchmark harness (bench/ at the repo root): its metrics on tiny inputs and one cheap run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.metrics import heading_recall, headings, table_cell_f1, table_cells, word_similarity, words
from bench.scaling import shard_ranges

REPO = Path(__file__).resolve().parents[1]

TRUTH = """# Study Title

## 5.1 Inclusion Criteria

Patients aged 18 to 75 years.

| Visit | Day | Window |
|---|---|---|
| Screening | -14 | ±2 |
| Baseline | 1 | 0 |
"""


def test_identical_markdown_scores_one() -> None:
    assert word_similarity(TRUTH, TRUTH) == 1.0
    assert heading_recall(TRUTH, TRUTH) == 1.0
    assert table_cell_f1(TRUTH, TRUTH) == 1.0


def test_markup_is_not_counted_as_words() -> None:
    assert words("## A <!-- BOUNDARY --> *b* | c |\n|---|\n") == ["A", "b", "c"]
    plain = (
        "Study Title 5.1 Inclusion Criteria Patients aged 18 to 75 years. "
        "Visit Day Window Screening -14 ±2 Baseline 1 0"
    )
    assert word_similarity(TRUTH, plain) == 1.0  # same words, no markup: text similarity does not care


def test_headings_are_found_only_as_headings() -> None:
    assert headings(TRUTH) == ["study title", "5 1 inclusion criteria"]
    as_paragraphs = TRUTH.replace("# ", "")
    assert heading_recall(TRUTH, as_paragraphs) == 0.0
    assert heading_recall(TRUTH, "### STUDY   title\n\ntext") == 0.5  # level and case do not matter
    assert heading_recall("no headings here", TRUTH) is None


def test_table_cells_are_a_bag_f1() -> None:
    assert sum(table_cells(TRUTH).values()) == 9  # the rule row is not a row of cells
    half = "| Visit | Day | Window |\n|---|---|---|\n| Screening | -99 | x |"
    # ours 6 cells, 4 right (visit, day, window, screening); truth has 9
    precision, recall = 4 / 6, 4 / 9
    assert table_cell_f1(TRUTH, half) == pytest.approx(2 * precision * recall / (precision + recall))
    assert table_cell_f1(TRUTH, "no table") == 0.0
    assert table_cell_f1("no table", TRUTH) is None
    assert table_cells("| a \\| b | c |") == {"a b": 1, "c": 1}  # an escaped pipe stays inside its cell


def test_shard_ranges_cover_every_page_once() -> None:
    assert shard_ranges(97, 2) == [(1, 49), (50, 97)]
    for pages, shards in [(97, 4), (10, 3), (3, 4)]:
        ranges = shard_ranges(pages, shards)
        covered = [page for first, last in ranges for page in range(first, last + 1)]
        assert covered == list(range(1, pages + 1))


def test_quick_search_benchmark_writes_results_and_report(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "search", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    search = results["benchmarks"]["search"]
    assert [size["chunks"] for size in search["sizes"]] == [1_000, 5_000]
    assert all(0 < size["p50_ms"] <= size["p95_ms"] for size in search["sizes"])
    assert len(search["meta"]["load_average_before"]) == 3
    report = (tmp_path / "REPORT.md").read_text()
    assert "## search" in report and "p50_ms" in report
    assert (tmp_path / "search_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
