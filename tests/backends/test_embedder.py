from __future__ import annotations

import numpy as np
import pytest

from ray_rag_dagster.backends.embedder import LocalEmbedder


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def test_dimension_and_normalisation(embedder: LocalEmbedder) -> None:
    result = embedder.embed_documents(["Inclusion criteria: adults aged 18 to 75.", "Metformin dose titration."])
    assert embedder.dimension == 384 and result.vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.tokens > 10 and result.windows == 2


def test_long_text_is_embedded_whole(embedder: LocalEmbedder) -> None:
    head = "The study enrols adults with type 2 diabetes on stable metformin. " * 24  # > 256 word pieces
    tail = "Severe hepatic impairment with ALT above three times the upper limit excludes a participant."
    long_text = head + tail
    result = embedder.embed_documents([long_text])
    assert result.windows > 1  # split into windows instead of truncated
    # The tail (beyond the model's window) still moves the vector: truncation would ignore it.
    truncated = embedder.embed_documents([head]).vectors[0]
    assert float(result.vectors[0] @ truncated) < 0.999
    query = embedder.embed_query("hepatic impairment ALT upper limit")
    assert float(result.vectors[0] @ query) > float(truncated @ query)
