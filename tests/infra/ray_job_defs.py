"""Two tiny Dagster jobs for tests/infra/test_run_launcher_on_ray.py: one that acts as a native Ray driver (as the
pipeline's run workers do on the head), one that fails in op code (never retried).

No `from __future__ import annotations` here: Dagster checks the op context's type hint at definition time.
"""

import os

import dagster as dg


@dg.op
def drive_ray(context: dg.OpExecutionContext) -> None:
    assert os.environ.get("RAY_RAG_RAY_ADDRESS") == "auto", os.environ.get("RAY_RAG_RAY_ADDRESS")
    import ray

    ray.init(address="auto")  # RAY_ADDRESS is set by the Ray job: a native driver, no Ray Client

    @ray.remote(num_cpus=1)
    def node() -> str:
        return ray.get_runtime_context().get_node_id()

    context.log.info(f"PLACEMENT driver={ray.get_runtime_context().get_node_id()} task={ray.get(node.remote())}")


@dg.op
def reject_input() -> None:
    raise dg.Failure("bad input")


@dg.job
def drives_ray() -> None:
    drive_ray()


@dg.job
def rejects_input() -> None:
    reject_input()


defs = dg.Definitions(jobs=[drives_ray, rejects_input])
