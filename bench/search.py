"""5b. Search latency at 10k and 100k chunks: the index in process, ``ray-rag serve`` over HTTP, and a cold
``ray-rag search`` with and without the server.

The index holds realistic chunks (text cut from the real PDFs, vectors from the real embedder: see
:mod:`bench.search_corpus`) loaded through ``LanceDBIndex.replace_document``, 500 chunks a document. Then:

- **in process**: ``LanceDBIndex.search`` with the questions' real query vectors, at each size;
- **HTTP**: ``ray-rag serve`` (a real process on the largest index), warmed, then ≥ 500 different questions
  sent one after another with httpx; latency as the client sees it, and the server's own ``took_ms``;
- **cold CLI**: ``ray-rag search "<question>" --json`` as a fresh process, 5 times with the server up and 5
  times without it (median; CPU seconds too, since the machine is shared and wall time follows the load).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, load_average, percentile, progress_line, ratio, scratch_dir
from bench.search_corpus import DOCUMENT_CHUNKS, EMBEDDER, Corpus, bench_embedder, models_folder, questions

TARGET_HTTP_P95_MS = 50.0
TARGET_COLD_SECONDS = 2.0
TARGET_COLD_WITH_SERVER_SECONDS = 0.2
CLI_RUNS = 5
QUICK_SEGMENTS = 200  # --quick embeds these only (seconds, not minutes, on a fresh cache): 39,800 distinct pairs


def _latencies(values: list[float]) -> dict[str, float]:
    return {f"p{share}_ms": round(percentile(values, share / 100), 1) for share in (50, 95, 99)}


def _in_process(index: Any, asked: list[str], vectors: Any) -> dict[str, float]:
    for question, vector in zip(asked[:3], vectors[:3], strict=True):
        index.search(question, vector, 5)  # warm: open the table, load the indices
    latencies = []
    for question, vector in zip(asked, vectors, strict=True):
        started = time.perf_counter()
        hits = index.search(question, vector, 5)
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(hits) == 5
    return _latencies(latencies)


def _over_http(url: str, asked: list[str], warm: int) -> dict[str, Any]:
    import httpx

    client_ms: list[float] = []
    server_ms: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client, progress_line("HTTP questions", len(asked)) as update:
        for question in asked[:warm]:
            client.get("/api/search", params={"q": question, "k": 5}).raise_for_status()
        for number, question in enumerate(asked, start=1):
            started = time.perf_counter()
            response = client.get("/api/search", params={"q": question, "k": 5})
            client_ms.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            answer = response.json()
            assert len(answer["hits"]) == 5, question
            server_ms.append(answer["took_ms"])
            update(completed=number)
    return {"questions": len(asked), "warm_up_questions": warm, **_latencies(client_ms),
            "server_took": _latencies(server_ms), "load_average": [round(v, 2) for v in load_average()]}


def _cold_cli(env: dict[str, str], cwd: Path, asked: list[str]) -> dict[str, Any]:
    """``ray-rag search "<question>" --json`` as fresh processes: wall and CPU seconds (user + system)."""
    command = str(Path(sys.executable).with_name("ray-rag"))
    walls, cpus = [], []
    for question in asked:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([command, "search", question, "--json"], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=300, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode == 0 and len(json.loads(done.stdout)) == 5, done.stderr[-2000:]
    return {"runs": len(walls), "median_seconds": round(statistics.median(walls), 3),
            "min_seconds": round(min(walls), 3), "median_cpu_seconds": round(statistics.median(cpus), 3),
            "wall_seconds": [round(v, 3) for v in walls], "load_average": [round(v, 2) for v in load_average()]}


def _serve_and_cli(home: Path, folder: Path, asked: list[str], quick: bool) -> dict[str, Any]:
    from bench.harness import new_side, start_service, stop_service
    from ray_rag_dagster.serve.client import find_server

    # The service embeds questions with the corpus's embedder (the index refuses another embedder's vectors).
    env = new_side().env(home, RAY_RAG_EMBEDDER=EMBEDDER, RAY_RAG_ONNX_PRECISION="fp32")
    cli_questions = asked[-(2 if quick else CLI_RUNS):]
    started = Stopwatch()
    server = start_service([sys.executable, "-m", "ray_rag_dagster.launcher", "serve", "--port", "0"], env, folder,
                           folder / "serve.log")
    try:
        url = None
        while url is None:
            if server.poll() is not None or started.seconds > 300:
                raise RuntimeError(f"ray-rag serve did not come up: {(folder / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.2)
            url = find_server(home)
        server_start_seconds = round(started.seconds, 1)
        http = _over_http(url, asked[: -len(cli_questions)], warm=10 if quick else 50)
        with_server = _cold_cli(env, folder, cli_questions)
    finally:
        stopped = stop_service(server)
    without_server = _cold_cli(env, folder, cli_questions)
    return {"server_start_seconds": server_start_seconds, "http": http,
            "cli_with_server": with_server, "cli_without_server": without_server, "server_stop": stopped}


def run(quick: bool) -> dict[str, Any]:
    from ray_rag_dagster.backends.vector_index import LanceDBIndex

    sizes = [1_000, 5_000] if quick else [10_000, 100_000]
    corpus = Corpus(sizes[-1], segment_limit=QUICK_SEGMENTS if quick else None)
    asked = questions(40 if quick else 560)
    embedder = bench_embedder()
    vectors = [embedder.embed_query(question) for question in asked]
    in_process_questions = 10 if quick else 60
    results: list[dict[str, Any]] = []
    with scratch_dir("search") as folder:
        home = folder / "home"
        home.mkdir()
        (home / "models").symlink_to(models_folder(), target_is_directory=True)
        index = LanceDBIndex(home / "lancedb", "chunks")
        loaded = 0
        build_seconds = 0.0
        for size in sizes:
            watch = Stopwatch()
            with progress_line(f"loading {size:,} chunks", size) as update:
                while loaded < size:
                    corpus.load(index, loaded, min(loaded + DOCUMENT_CHUNKS, size))
                    loaded = min(loaded + DOCUMENT_CHUNKS, size)
                    update(completed=loaded)
            build_seconds += watch.seconds
            assert index.count() == size
            results.append({
                "chunks": size, "queries": in_process_questions,
                **_in_process(index, asked[:in_process_questions], vectors[:in_process_questions]),
                "build_seconds_cumulative": round(build_seconds, 1),
                "load_average": [round(v, 2) for v in load_average()],
            })
        service = _serve_and_cli(home, folder, asked, quick)
    http, cold, warm_cli = service["http"], service["cli_without_server"], service["cli_with_server"]
    return {
        "embedder": EMBEDDER,
        "corpus": f"{sizes[-1]:,} distinct chunks from {len(corpus.segment_texts):,} real-text segments; vectors: "
                  f"segments embedded by the {EMBEDDER} embedder, a chunk's = normalised sum of its two segments'",
        "sizes": results,
        "p50_growth": ratio(results[-1]["p50_ms"], results[0]["p50_ms"]),
        "size_growth": ratio(results[-1]["chunks"], results[0]["chunks"]),
        **service,
        "targets": {
            "http_p95_ms": TARGET_HTTP_P95_MS, "http_p95_met": http["p95_ms"] <= TARGET_HTTP_P95_MS,
            "cold_seconds": TARGET_COLD_SECONDS, "cold_met": cold["median_seconds"] <= TARGET_COLD_SECONDS,
            "cold_with_server_seconds": TARGET_COLD_WITH_SERVER_SECONDS,
            "cold_with_server_met": warm_cli["median_seconds"] <= TARGET_COLD_WITH_SERVER_SECONDS,
        },
    }
