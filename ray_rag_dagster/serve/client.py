"""Finding a running ``ray-rag serve`` and asking it, with the standard library only.

A server writes ``$RAY_RAG_HOME/serve.json`` (its URL and pid) once it listens, and removes it on exit. A
client trusts the file only when that pid is alive and ``/api/health`` answers within
:data:`HEALTH_TIMEOUT` seconds; otherwise it searches the index itself. Nothing here imports pydantic,
numpy, LanceDB or the embedding model: ``ray-rag search`` with a server up costs a Python start, one
health check and one request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

SERVER_FILE = "serve.json"
# Long enough for a server on a loaded machine (searching without it costs seconds of imports and model load);
# a dead port refuses at once, so only a hung server makes a search wait this long.
HEALTH_TIMEOUT = 1.0
SEARCH_TIMEOUT = 30.0


def ray_rag_home() -> Path:
    """``$RAY_RAG_HOME`` as :class:`~ray_rag_dagster.settings.Settings` reads it (case-insensitive name),
    without importing pydantic."""
    for name, value in os.environ.items():
        if name.upper() == "RAY_RAG_HOME" and value:
            return Path(value).expanduser()
    return Path.home() / ".ray-rag"


def server_file(home: Path | None = None) -> Path:
    return (home or ray_rag_home()) / SERVER_FILE


def write_server_file(home: Path, url: str, pid: int | None = None) -> Path:
    path = server_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps({"url": url, "pid": pid or os.getpid()}))
    staging.replace(path)
    return path


def remove_server_file(home: Path, pid: int | None = None) -> None:
    """Remove the file if it is this server's (a second server may have written its own since)."""
    path = server_file(home)
    try:
        if json.loads(path.read_text()).get("pid") == (pid or os.getpid()):
            path.unlink()
    except (OSError, ValueError):
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _get_json(url: str, timeout: float) -> Any:
    import http.client

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"{url}: HTTP {response.status}")
        return json.loads(body)
    finally:
        connection.close()


def find_server(home: Path | None = None) -> str | None:
    """The base URL of a live server on this state folder, or None."""
    try:
        info = json.loads(server_file(home).read_text())
        url, pid = str(info["url"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        health = _get_json(f"{url}/api/health", HEALTH_TIMEOUT)
    except (OSError, ValueError):
        return None
    return url if isinstance(health, dict) and health.get("status") == "ok" else None


def search_server(url: str, question: str, k: int) -> list[dict[str, Any]]:
    answer = _get_json(f"{url}/api/search?q={quote(question)}&k={int(k)}", SEARCH_TIMEOUT)
    return list(answer["hits"])


def search_via_server(question: str, k: int, as_json: bool, home: Path | None = None) -> bool:
    """Answer from a running server and print the hits; False when none answers (the caller searches itself)."""
    url = find_server(home)
    if url is None:
        return False
    try:
        hits = search_server(url, question, k)
    except (OSError, ValueError, KeyError):
        return False
    if as_json:
        print(json.dumps(hits, indent=2, ensure_ascii=False))
        return True
    from rich.console import Console

    from ray_rag_dagster.hits import print_hits

    print_hits(Console(), question, hits, source=url)
    return True


def search_args(argv: list[str]) -> tuple[str, int, bool] | None:
    """``QUESTION [-k N] [--json]`` as ``(question, k, as_json)``, parsed without typer.

    Anything this small parser does not understand (``--help``, a typo) gives None, and the full CLI
    handles it with its usual messages.
    """
    question: str | None = None
    k, as_json = 5, False
    args = iter(argv)
    for arg in args:
        if arg == "--json":
            as_json = True
        elif arg in ("-k", "--k"):
            value = next(args, None)
            if value is None or not value.isdigit():
                return None
            k = int(value)
        elif arg.startswith("-k") and arg[2:].isdigit():
            k = int(arg[2:])
        elif arg.startswith("-") and arg != "-":
            return None
        elif question is None:
            question = arg
        else:
            return None
    return (question, k, as_json) if question else None
