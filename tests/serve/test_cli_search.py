"""``ray-rag search`` finds a running ``ray-rag serve`` through its server file, and falls back without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ray_rag_dagster.serve.client import _get_json, find_server, server_file, write_server_file
from tests.serve.conftest import SearchState


def _search(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from ray_rag_dagster.launcher import main\n"
        f"sys.argv = ['ray-rag', 'search', *{list(args)!r}]\n"
        "try:\n    main()\n"
        "finally:\n"
        "    print('IMPORTED', sorted({m.split('.')[0] for m in sys.modules}"
        " & {'typer', 'pydantic', 'numpy', 'lancedb', 'onnxruntime', 'model2vec'}), file=sys.stderr)\n"
    )
    env = {**os.environ, "RAY_RAG_HOME": str(home), "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180, check=False)


def test_search_uses_the_running_server(server: str, search_state: SearchState) -> None:
    home = search_state.settings.home
    before = _get_json(f"{server}/api/health", 5)["searches"]
    result = _search(home, "inclusion criteria age", "-k", "2", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert [hit["rank"] for hit in hits] == [1, 2] and "Age 18 to 75 years" in hits[0]["text"]
    assert {"document_id", "source_key", "page_start", "page_end", "heading_path", "score", "text", "passage"} <= set(hits[0])
    assert _get_json(f"{server}/api/health", 5)["searches"] == before + 1
    assert "IMPORTED []" in result.stderr, result.stderr  # no typer, pydantic, numpy, LanceDB or model

    table = _search(home, "inclusion criteria age", "-k", "1")
    assert table.returncode == 0 and "synthetic_protocol_ABC-123.pdf" in table.stdout and f"answered by {server}" in table.stdout


def test_a_stale_server_file_is_ignored(tmp_path: Path, search_state: SearchState) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_server_file(tmp_path, "http://127.0.0.1:9", pid=dead.pid)
    assert find_server(tmp_path) is None
    write_server_file(tmp_path, "http://127.0.0.1:9", pid=os.getpid())  # alive, but nothing answers there
    assert find_server(tmp_path) is None
    server_file(tmp_path).write_text("not json")
    assert find_server(tmp_path) is None


def test_search_without_a_server_searches_the_index_itself(search_state: SearchState, tmp_path: Path) -> None:
    # A copy of the state folder with no server file: the CLI loads the index and the model itself.
    import shutil

    home = tmp_path / "home"
    shutil.copytree(search_state.settings.home, home, symlinks=True, ignore=shutil.ignore_patterns("serve.json"))
    result = _search(home, "inclusion criteria age", "-k", "2", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 2 and "Age 18 to 75 years" in hits[0]["text"]
    assert "lancedb" in result.stderr and "model2vec" in result.stderr  # the default embedder, static
