"""The ``ray-rag`` command: starts the everyday commands without loading the whole CLI.

A well-formed ``search`` is answered before even typer is imported: by a running ``ray-rag serve`` (a Python
start, one health check, one request), else in this process, which loads only the index and the model
(:func:`ray_rag_dagster.search.answer_search`). ``search`` with anything else (``--help``), ``status`` and
``serve`` run from :mod:`ray_rag_dagster.cli_search`, which imports typer and rich only. Every other command, and ``--help``,
goes to the full CLI (:mod:`ray_rag_dagster.cli`), which imports no Dagster, Ray, docling or torch either
until a command needs them.
"""

from __future__ import annotations

import sys

LIGHT_COMMANDS = ("search", "status", "serve")


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else None
    if command == "search":
        from ray_rag_dagster.serve.client import search_args

        parsed = search_args(sys.argv[2:])
        if parsed is not None:
            from ray_rag_dagster.search import answer_search

            answer_search(*parsed)
            return
    if command in LIGHT_COMMANDS:
        from ray_rag_dagster.cli_search import main as light_main

        light_main()
        return
    from ray_rag_dagster.cli import main as full_main

    full_main()


if __name__ == "__main__":
    main()
