"""The ONNX Runtime embedder: built by the project on first use, once, and identical to the torch embedder."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from ray_rag_dagster.backends.embedder import LocalEmbedder
from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder, ensure_onnx_model, onnx_model_files

MODEL = "all-MiniLM-L6-v2"

TEXTS = [
    "",
    "   Inclusion criteria   ",
    "Participants aged 18 to 75 years with type 2 diabetes and HbA1c between 7.0% and 10.5% at screening.",
    # longer than MiniLM's 256 word pieces: several windows, pooled
    " ".join(
        f"Visit {n}: vital signs, ECG, haematology (Hb ≥ 10 g/dL), ALT ≤ 2.5 × ULN, "
        "creatinine clearance ≥ 60 mL/min."
        for n in range(40)
    ),
    "Über café — naïve résumé; 東京 臨床試験; µg/kg·min⁻¹",
]


def _export_in_child(models_dir: str) -> tuple[int, float]:
    files = ensure_onnx_model(Path(models_dir), MODEL)
    stat = files.model.stat()
    return stat.st_ino, stat.st_mtime


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two processes ask for the model at the same time, like two Ray workers: one exports, one waits."""
    folder = tmp_path_factory.mktemp("models")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_export_in_child, [str(folder)] * 2)
    assert results[0] == results[1]  # both see the same file: it was written once
    return folder


def test_export_is_cached_on_disk_once(models_dir: Path) -> None:
    files = onnx_model_files(models_dir, MODEL)
    assert files.complete()
    # only the finished folder and its lock file: no staging folder left behind
    finished = {files.folder.name, onnx_model_files(models_dir, MODEL, precision="int8").folder.name}
    assert files.folder.name + ".lock" in {p.name for p in models_dir.iterdir()}
    assert [p.name for p in models_dir.iterdir() if p.name not in finished and p.suffix != ".lock"] == []
    before = files.model.stat().st_mtime_ns
    OnnxEmbedder(models_dir, MODEL)
    assert files.model.stat().st_mtime_ns == before


def test_vectors_match_the_torch_embedder(models_dir: Path) -> None:
    onnx = OnnxEmbedder(models_dir, MODEL, batch_size=2)  # small batches: several length-sorted batches
    torch_side = LocalEmbedder(MODEL)
    expected = torch_side.embed_documents(TEXTS)
    got = onnx.embed_documents(TEXTS)
    assert got.vectors.shape == (len(TEXTS), 384) == expected.vectors.shape
    assert got.vectors.dtype == np.float32
    cosines = np.sum(got.vectors * expected.vectors, axis=1)
    assert cosines.min() >= 0.9999, cosines
    assert np.allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)
    assert (got.tokens, got.windows) == (expected.tokens, expected.windows)
    assert got.windows > len(TEXTS)  # the long text really was split, not cut


def test_order_and_query(models_dir: Path) -> None:
    onnx = OnnxEmbedder(models_dir, MODEL)
    assert (onnx.name, onnx.dimension) == (MODEL, 384)
    forward = onnx.embed_documents(TEXTS).vectors
    backward = onnx.embed_documents(TEXTS[::-1]).vectors[::-1]
    assert np.allclose(forward, backward, atol=1e-5)  # each vector belongs to its own text
    query = onnx.embed_query(TEXTS[2])
    assert np.allclose(query, forward[2], atol=1e-5)
    assert onnx.embed_documents([]).vectors.shape == (0, 384)


def test_related_texts_are_closer(models_dir: Path) -> None:
    onnx = OnnxEmbedder(models_dir, MODEL)
    question, answer, other = onnx.embed_documents(
        ["What HbA1c is required at screening?", TEXTS[2], "The sponsor stores samples for ten years."]
    ).vectors
    assert question @ answer > question @ other + 0.1


def test_batches_bound_padded_tokens_and_keep_vectors(models_dir: Path) -> None:
    onnx = OnnxEmbedder(models_dir, MODEL, batch_size=32, max_batch_tokens=300)
    lengths = [256, 12, 40, 256, 3, 128, 256, 90]
    batches = onnx._batches(lengths)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 300
    # bounded batches change memory and speed, not the vectors
    unbounded = OnnxEmbedder(models_dir, MODEL, batch_size=32, max_batch_tokens=10**9)
    assert np.allclose(onnx.embed_documents(TEXTS).vectors, unbounded.embed_documents(TEXTS).vectors, atol=1e-5)


# Token-dense text (JSON with ids, codes and URLs, like a USDM file): ~3 characters per word piece, so a
# 1500-character chunk is 2-3 windows. The eager-attention graph must still give torch's vectors.
TOKEN_DENSE = [
    (
        f'{{"id": "Code_{n}", "extensionAttributes": [], "code": "C{132352 + n}", "codeSystem": '
        f'"http://www.cdisc.org", "codeSystemVersion": "2025-09-26", "decode": "Sponsor Approval Date", '
        f'"instanceType": "Code", "href": "https://clinicaltrials.gov/study/NCT0342{n:04d}?tab=results#outcome-{n}"}} '
    )
    * (3 + n % 4)
    for n in range(6)
]


def test_token_dense_vectors_match_the_torch_embedder(models_dir: Path) -> None:
    onnx = OnnxEmbedder(models_dir, MODEL)  # default graph and batches
    expected = LocalEmbedder(MODEL).embed_documents(TOKEN_DENSE)
    got = onnx.embed_documents(TOKEN_DENSE)
    assert got.windows == expected.windows and got.windows >= 2 * len(TOKEN_DENSE)  # several windows each
    assert got.tokens == expected.tokens
    cosines = np.sum(got.vectors * expected.vectors, axis=1)
    assert cosines.min() >= 0.9999, cosines


def test_chunking_attributes(models_dir: Path) -> None:
    onnx = OnnxEmbedder(models_dir, MODEL)
    assert onnx.max_tokens == 254  # 256 word pieces minus [CLS] and [SEP]: one window
    assert onnx.tokenizer_path == onnx_model_files(models_dir, MODEL).tokenizer
    counts = onnx.count_tokens(TOKEN_DENSE[:2])
    assert counts == [len(onnx._token_offsets(text)) for text in TOKEN_DENSE[:2]]
    assert counts == LocalEmbedder(MODEL).count_tokens(TOKEN_DENSE[:2])  # the same tokenizer


def test_int8_weights_keep_the_vectors_close_and_rank_the_same(models_dir: Path) -> None:
    """int8 (per-channel MatMul weights) is derived from the fp32 graph once, beside it, and its vectors stay
    close to fp32's: a per-tensor quantization drifts to cosine 0.79 on such text and fails this."""
    full = OnnxEmbedder(models_dir, MODEL)
    int8 = OnnxEmbedder(models_dir, MODEL, precision="int8")
    assert int8.name == f"{MODEL}-int8" and int8.dimension == full.dimension
    files = onnx_model_files(models_dir, MODEL, precision="int8")
    assert files.complete() and files.model.stat().st_size < 0.8 * onnx_model_files(models_dir, MODEL).model.stat().st_size
    texts = TEXTS[1:] + TOKEN_DENSE
    cosines = np.sum(int8.embed_documents(texts).vectors * full.embed_documents(texts).vectors, axis=1)
    assert cosines.min() >= 0.97, cosines
    # A query finds the same passage first with either model.
    query = "creatinine clearance at each visit"
    assert np.argmax(int8.embed_documents(texts).vectors @ int8.embed_query(query)) == np.argmax(
        full.embed_documents(texts).vectors @ full.embed_query(query))
