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
    assert words("## A <!-- page 2 --> *b* | c |\n|---|\n") == ["A", "b", "c"]
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
        check=False,
        text=True,
        timeout=300,  # builds an index, starts `ray-rag serve`, runs `ray-rag search` 4 times
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    search = results["benchmarks"]["search"]
    assert [size["chunks"] for size in search["sizes"]] == [1_000, 5_000]
    assert all(0 < size["p50_ms"] <= size["p95_ms"] for size in search["sizes"])
    assert search["http"]["questions"] == 38 and 0 < search["http"]["p50_ms"] <= search["http"]["p95_ms"]
    assert search["cli_with_server"]["runs"] == search["cli_without_server"]["runs"] == 2
    assert len(search["meta"]["load_average_before"]) == 3
    report = (tmp_path / "REPORT.md").read_text()
    assert "## search" in report and "p50_ms" in report
    assert (tmp_path / "search_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- issue 8's many-documents benchmarks: data sets, measurements and report tables (no pipeline runs) --------


def test_data_set_manifest_names_real_pdfs_of_the_agreed_sizes() -> None:
    from bench.datasets import load_manifest

    files, sets = load_manifest()
    assert all(5 <= entry.pages <= 120 and len(entry.sha256) == 64 for entry in files.values())
    bulk, storm = sets["bulk"], sets["storm"]
    assert len(bulk) >= 20 and sum(files[name].pages for name in bulk) >= 500
    assert len(storm) == 50 and 500 <= sum(files[name].pages for name in storm) <= 900
    assert len(set(bulk)) == len(bulk) and len(set(storm)) == len(storm)
    assert {files[name].source for name in bulk} >= {"shared", "r-doc-pdf", "texlive-latex-recommended-doc"}


def test_generated_small_pdfs_are_distinct_and_short(tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    from bench.generated import write_small_pdfs

    paths = write_small_pdfs(tmp_path, 3, prefix="t")
    assert [p.name for p in paths] == ["t-0001.pdf", "t-0002.pdf", "t-0003.pdf"]
    assert len({p.read_bytes() for p in paths}) == 3
    for path in paths:
        pdf = pdfium.PdfDocument(str(path))
        assert 1 <= len(pdf) <= 2
        pdf.close()


def test_cpu_share_and_state_folder_processes(tmp_path: Path) -> None:
    from bench.harness import cpu_fraction, cpu_sample, mem_available_fraction, state_processes

    start = cpu_sample()
    sum(i * i for i in range(200_000))
    share = cpu_fraction(start, cpu_sample())
    assert share is None or 0.0 <= share <= 1.0
    assert 0.0 < mem_available_fraction() <= 1.0
    marker = tmp_path / "state-home"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env={"RAY_RAG_HOME": str(marker), "PATH": "/usr/bin:/bin"})
    try:
        deadline = __import__("time").time() + 10
        while child.pid not in state_processes(marker) and __import__("time").time() < deadline:
            __import__("time").sleep(0.1)
        assert child.pid in state_processes(marker)
    finally:
        child.kill()
        child.wait()


def test_report_tables_for_the_many_documents_benchmarks(tmp_path: Path) -> None:
    from bench.report import write_report

    side = {"wall_seconds": 10.0, "pages_per_second": 2.0, "cpu_busy_fraction": 0.9, "statuses": {"COMPLETED": 2},
            "mem_available_min_pct": 80.0, "ray_clusters_max": 1, "dagster": {"runs": 1}, "all_completed": True,
            "stage_seconds": {"source": "test", "extract": 5.0, "total": 8.0}}
    results = {"benchmarks": {
        "bulk": {"documents": 2, "pages": 20, "old_commit": "cd27f23", "new_code": "/x", "old": side,
                 "new": {**side, "pages_per_second": 4.0}, "speedup_new_over_old": 2.0},
        "storm": {"documents": 2, "pages": 20, "storm_over_ingest": 1.1, "target_storm_over_ingest": 1.2,
                  "storm": {"drop_to_all_completed_seconds": 11.0, "statuses": {"COMPLETED": 2},
                            "mem_available_min_pct": 70.0, "ray_clusters_max": 1, "ray_clusters_before": 0,
                            "dagster": {"runs": 1}},
                  "ingest": {**side}, "before_old_code": __import__("bench.storm", fromlist=["BEFORE"]).BEFORE},
        "overhead": {"documents": 4, "groups": 4, "ratio_pipeline_over_direct": 1.05, "target_ratio": 1.1,
                     "overhead_seconds_per_document": 0.05,
                     "rounds": [{"path": p, "documents": 1, "seconds": 1.0} for p in ("direct", "pipeline") * 2],
                     "old_reference": {"error": "skipped in the test"}},
        "backfill": {"documents": 20, "partitions_per_run": 25, "runs": 1, "target_max_runs": 1,
                     "backfill_seconds": 30.0, "seconds_per_document": 1.5, "dagster_seconds_per_document": 0.2,
                     "direct": {"seconds": 26.0}, "definition": "d",
                     "backfill": {"backfill_id": "b", "backfill_status": "COMPLETED_SUCCESS", "assets": ["a"],
                                  "statuses": {"COMPLETED": 20},
                                  "backfill_runs": {"by_status": {"SUCCESS": 1}, "create_to_start_seconds_sum": 1,
                                                    "run_seconds_sum": 28}}},
    }}
    report = write_report(results, tmp_path).read_text()
    for needle in ("speed-up (new ÷ old pages/s): 2.0", "storm ÷ ingest: 1.1", "pipeline ÷ direct: 1.05",
                   "| 20 | 25 | 1 | 1 |"):
        assert needle in report
    assert (tmp_path / "bulk_pages_per_second.png").is_file()


# --- the soak: wave planning and the stuck/report computation (no pipeline runs) ----------------------------------


def test_soak_plan_spreads_real_pdfs_and_churns_early_files() -> None:
    from bench.soak import mix, plan_waves

    real = [Path(f"real-{i}.pdf") for i in range(4)]
    generated = [Path(f"gen-{i}.pdf") for i in range(8)]
    documents = mix(real, generated)
    assert sorted(documents) == sorted(real + generated)
    plan = plan_waves(documents, [Path("new-1.pdf"), Path("new-2.pdf")], waves=4, interval_seconds=60)
    assert [len(wave) for wave in plan.waves] == [3, 3, 3, 3]
    assert [sum(p.name.startswith("real") for p in wave) for wave in plan.waves] == [1, 1, 1, 1]
    early = {p.name for wave in plan.waves[:2] for p in wave}
    touched = [*plan.replacements, *plan.deletions]
    assert len(set(touched)) == 4 and set(touched) <= early  # replaced and deleted files were dropped before
    assert plan.churn_after_seconds == 150
    assert [kind for _, kind, _ in plan.schedule()] == ["wave", "wave", "wave", "churn", "wave"]
    with pytest.raises(ValueError):
        plan_waves(documents[:4], [Path("a.pdf"), Path("b.pdf"), Path("c.pdf")])


def test_soak_assess_counts_documents_not_in_their_end_state_as_stuck() -> None:
    from bench.soak import Plan, assess, document_id

    names = ["done.pdf", "failed.pdf", "running.pdf", "deleted.pdf", "replaced.pdf", "lost-delete.pdf", "never.pdf"]
    plan = Plan(waves=[[Path(n) for n in names]], churn_after_seconds=1, interval_seconds=1,
                replacements={"replaced.pdf": Path("new.pdf")}, deletions=["deleted.pdf", "lost-delete.pdf"])

    def row(name: str, status: str, version: str = "v1", at: str = "1", **extra: object) -> dict:
        return {"document_id": document_id(name), "processing_version": version, "status": status,
                "updated_at": at, "current_stage": "load", "error": None, **extra}

    rows = [row("done.pdf", "COMPLETED"), row("failed.pdf", "FAILED", error="bad PDF"),
            row("running.pdf", "IN_PROGRESS"), row("deleted.pdf", "DELETED"), row("lost-delete.pdf", "COMPLETED"),
            # the new version is done, though the old one's row was updated last
            row("replaced.pdf", "COMPLETED", "v2", at="2"), row("replaced.pdf", "PENDING", "v1", at="3")]
    verdict = assess(plan, rows, {"replaced.pdf": "v2"})
    assert [(s["name"], s["status"]) for s in verdict["stuck"]] == [
        ("running.pdf", "IN_PROGRESS"), ("lost-delete.pdf", "COMPLETED"), ("never.pdf", "MISSING")]
    assert verdict["failed"] == [{"name": "failed.pdf", "document_id": document_id("failed.pdf"), "stage": "load",
                                  "error": "bad PDF"}]
    assert verdict["statuses"] == {"COMPLETED": 2, "FAILED": 1, "IN_PROGRESS (not ended)": 1, "DELETED": 1,
                                   "COMPLETED (not ended)": 1, "MISSING (not ended)": 1}
    # the replaced file still on its old version is stuck too
    assert "replaced.pdf" in [s["name"] for s in assess(plan, rows, {"replaced.pdf": "v3"})["stuck"]]


def test_soak_report_table_and_rss_plot(tmp_path: Path) -> None:
    from bench.report import write_report

    result = {
        "documents": 12, "real_pdfs": 3, "generated_pdfs": 9, "waves": [3, 3, 3, 3], "wave_interval_seconds": 60,
        "churn_after_seconds": 150, "replaced": ["a.pdf"], "deleted": ["b.pdf"], "pages": 40,
        "statuses": {"COMPLETED": 11, "DELETED": 1}, "stuck": [], "failed": [], "mem_available_min_mb": 20_000,
        "runs_in_flight_max": 2, "first_drop_to_all_ended_seconds": 300.0,
        "events": [{"at_s": 0, "event": "wave", "wave": 1}, {"at_s": 150, "event": "churn", "wave": 5}],
        "index": {"deleted_rows_left": {"b.pdf": 0}, "replaced": {"a.pdf": {"only_new_version": True,
                                                                            "marker_found": True}}},
        "memory": {"worker_peak_mb_max": 1500.0, "worker_peak_mb": {"11": 1500.0, "12": 900.0},
                   "worker_processes": 2, "worker_replacements": 0, "raylet_peak_mb": 80.0, "gcs_peak_mb": 60.0},
    }
    timeline = [{"t": t, "workers_mb": {"11": 500.0 + t, "12": 400.0}, "raylet_mb": 80.0, "gcs_server_mb": 60.0,
                 "mem_available_mb": 20_000, "runs_in_flight": 1} for t in (0, 5, 10)]
    (tmp_path / "soak.json").write_text(json.dumps({**result, "timeline": timeline}))
    report = write_report({"benchmarks": {"soak": result}}, tmp_path).read_text()
    assert "| 12 (3 real, 9 generated) | 3 + 3 + 3 + 3 every 60 s | 0 | 0 |" in report
    assert "| 1/1 | 1/1 | 1500 | 2 | 0 |" in report
    assert (tmp_path / "soak_rss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
