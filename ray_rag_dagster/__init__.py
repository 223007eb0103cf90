
import os as _os

if not _os.environ.get("RAY_RAG_RAY_ADDRESS"):
    # The shared local Ray cluster authenticates with its own token (compute/cluster.py). Ray reads these
    # variables when it is imported, so they are set here, before any module of the package imports ray.
    from ray_rag_dagster.compute.cluster import registry_dir as _registry_dir

    _os.environ.setdefault("RAY_AUTH_MODE", "token")
    _os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(_registry_dir() / "auth_token"))
