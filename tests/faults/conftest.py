from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_rag_dagster.compute.cluster import connect
from ray_rag_dagster.dagster_home import prepare_dagster_home
from ray_rag_dagster.settings import Settings


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A fresh state folder for this test, in the environment (child processes inherit it), and this
    process connected to the session's cluster (so the cluster outlives every child that leaves it)."""
    monkeypatch.setenv("RAY_RAG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    settings = Settings()
    prepare_dagster_home(settings)
    connect(settings)
    yield settings
