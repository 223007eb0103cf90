"""Shared fixtures: the real PDFs beside the repository, and an isolated state folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# CI lays shared/ beside the clone, as on the developers' machines: read PDFs from there, never copy them.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PDFS = SHARED_DATA / "pdfs"
GROUNDTRUTH = SHARED_DATA / "groundtruth"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_pdfs() -> Path:
    if not PDFS.is_dir():
        pytest.fail(f"expected the shared PDFs at {PDFS}")
    return PDFS
