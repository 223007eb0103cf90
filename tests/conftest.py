"""Shared fixtures: the real PDFs beside the repository, an isolated state folder, and a private Ray.

Every test session gets its own shared-cluster registry (``RAY_RAG_CLUSTER_DIR``, a temporary folder unless
set): the tests start and join *their* local Ray, never the one a developer's ``ray-rag dev`` runs, and the
session stops it at the end. The folder must be chosen before ``ray_rag_dagster`` is imported: the package
points Ray's token auth at the registry's token when it is imported, before Ray is.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_OWN_CLUSTER_DIR = "RAY_RAG_CLUSTER_DIR" not in os.environ
if _OWN_CLUSTER_DIR:
    os.environ["RAY_RAG_CLUSTER_DIR"] = tempfile.mkdtemp(prefix="ray-rag-cluster-tests-")
    # Registered first, so it runs last: after the cluster's own exit hook (which takes the registry's lock).
    atexit.register(shutil.rmtree, os.environ["RAY_RAG_CLUSTER_DIR"], ignore_errors=True)
CLUSTER_DIR = Path(os.environ["RAY_RAG_CLUSTER_DIR"])

import ray_rag_dagster  # noqa: E402, F401 - sets Ray's auth environment before anything imports ray

import pytest  # noqa: E402

from tests.standins.aws import FAKE_AWS_ENV  # noqa: E402

# The shared cluster's Ray workers inherit the environment of the process that starts its head: moto's
# credentials go in before any cluster starts, so boto3 clients on the workers find them (and never real ones).
os.environ.update(FAKE_AWS_ENV)


def _shared_data() -> Path:
    """CI lays shared/ beside the clone, as on the developers' machines (a git worktree sits one level
    deeper): read PDFs from there, never copy them."""
    here = Path(__file__).resolve()
    for folder in here.parents[1:]:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return here.parents[2] / "shared" / "data"


SHARED_DATA = _shared_data()
PDFS = SHARED_DATA / "pdfs"
GROUNDTRUTH = SHARED_DATA / "groundtruth"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The embedders' one-time builds (distilled static model, ONNX export), kept between tests and test runs: every
# test's fresh state folder would otherwise rebuild them (≈ 30 s each). The builds themselves are tested with
# their own folders (tests/backends/test_static_embedder.py, test_onnx_embedder.py).
MODEL_CACHE = Path(__file__).resolve().parent / "artifacts" / "models"
os.environ.setdefault("RAY_RAG_MODEL_CACHE", str(MODEL_CACHE))


@pytest.fixture(scope="session", autouse=True)
def local_ray_cluster() -> Iterator[Path]:
    """The session's shared local Ray (started by the first test that needs it), stopped at the end."""
    yield CLUSTER_DIR
    from ray_rag_dagster.compute.cluster import LocalCluster, connect

    cluster = LocalCluster(CLUSTER_DIR)
    if cluster.running() is not None:
        # Detached stage workers make the head drain for its full 30 s on SIGTERM; stopped first, it
        # stops in a few seconds.
        from ray_rag_dagster.compute.workers import stop_workers
        from ray_rag_dagster.settings import Settings

        try:
            connect(Settings())
            stop_workers()
        except Exception:  # noqa: BLE001 - stopping the head below is what matters
            pass
    cluster.stop()


@pytest.fixture(scope="session")
def shared_pdfs() -> Path:
    if not PDFS.is_dir():
        pytest.fail(f"expected the shared PDFs at {PDFS}")
    return PDFS


@pytest.fixture(scope="session")
def onnx_embedder():  # type: ignore[no-untyped-def]
    """MiniLM on ONNX Runtime (from the session's model cache), whose tokenizer and window size the chunks."""
    from ray_rag_dagster.backends.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(MODEL_CACHE)
