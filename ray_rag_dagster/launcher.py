"""The ``ray-rag`` command: starts the everyday commands without loading the whole CLI.

``search`` is answered by a running ``ray-rag serve`` before even typer is imported (a Python start, one
health check, one request); ``search``, ``status`` and ``serve`` otherwise run from
:mod:`ray_rag_dagster.cli_search`, which imports typer and rich only. Every other command, and ``--help``,
goes to the full CLI (:mod:`ray_rag_dagster.cli`), which imports no Dagster, Ray, docling or torch either
until a command needs them.
"""

from __future__ import annotations

import sys

LIGHT_COMMANDS = ("search", "status", "serve")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else None
    if command == "search":
        from ray_rag_dagster.serve.client import fast_search

        if fast_search(sys.argv[2:]):
            return
    if command in LIGHT_COMMANDS:
        from ray_rag_dagster.cli_search import main as light_main

        light_main()
        return
    from ray_rag_dagster.cli import main as full_main

    full_main()


if __name__ == "__main__":
    main()
