"""One local Ray per machine: processes that need Ray join the running cluster instead of starting their own,
and the last one out stops it.

Runs on a registry folder of its own (not the session's cluster): two real user processes, as two Dagster
runs or ``ray-rag dev`` and ``ray-rag ingest`` would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_rag_dagster.compute.cluster import LocalCluster, _pid_alive

REPO = Path(__file__).resolve().parents[2]
# A user joins (or starts) the shared cluster, says where it is, and holds on until told to go: a Ray driver
# (a Dagster run, ``ray-rag ingest``), or a process that only holds the cluster and never imports Ray
# (``ray-rag dev``).
USER = """
import json, sys
import ray_rag_dagster
from ray_rag_dagster.compute.cluster import LocalCluster, connect
from ray_rag_dagster.settings import Settings

if sys.argv[1] == "driver":
    import ray

    connect(Settings())
    seen = {"address": ray.get_runtime_context().gcs_address, "cpus": ray.cluster_resources().get("CPU")}
else:
    seen = {"address": LocalCluster().acquire(Settings())}
    assert "ray" not in sys.modules
print(json.dumps(seen), flush=True)
sys.stdin.readline()
"""


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (session id, state, command line) of every process on the machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[3]), fields[0], command)
    return found


def _cluster_processes(head_pid: int, port: str) -> list[str]:
    """Live processes of the head's session (the head started it) or naming its port."""
    return [
        f"{pid}: {command[:160]}"
        for pid, (session, state, command) in _processes().items()
        if state != "Z" and (session == head_pid or f"={port}" in command or f":{port}" in command)
    ]


def test_two_processes_share_one_cluster_and_the_last_one_out_stops_it(tmp_path: Path) -> None:
    registry = tmp_path / "cluster"
    environment = {
        **os.environ,
        "RAY_RAG_CLUSTER_DIR": str(registry),
        "RAY_RAG_HOME": str(tmp_path / "home"),
        "RAY_RAG_RAY_NUM_CPUS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for name in ("RAY_RAG_RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        environment.pop(name, None)  # each user finds the cluster's auth through the registry, as in real use
    users = [
        subprocess.Popen([sys.executable, "-c", USER, kind], env=environment, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for kind in ("driver", "holder")
    ]  # started together: both race for the registry
    try:
        seen = []
        for user in users:
            line = user.stdout.readline()  # type: ignore[union-attr]
            assert line, user.stderr.read()[-3000:]  # type: ignore[union-attr]
            seen.append(json.loads(line))
        cluster = LocalCluster(registry)
        record = cluster.running()
        assert record is not None
        # Ray reports the GCS at the node's own IP: the same cluster is the same GCS port.
        port = record["address"].rsplit(":", 1)[1]
        assert [user["address"].rsplit(":", 1)[1] for user in seen] == [port, port]
        assert seen[0]["cpus"] == 1
        assert sorted(cluster.live_users()) == sorted(user.pid for user in users)
        head = int(record["pid"])
        gcs_servers = [
            pid for pid, (_session, state, command) in _processes().items()
            if state != "Z" and "gcs_server" in command.split(" ", 1)[0] and f"--gcs_server_port={port}" in command
        ]
        assert len(gcs_servers) == 1, _cluster_processes(head, port)

        # The first user leaves: the other still uses the cluster, which runs on.
        users[0].communicate("\n", timeout=120)
        assert users[0].returncode == 0
        assert cluster.running() is not None and cluster.live_users() == [users[1].pid]

        # The last user (one that never imported Ray) leaves: the head stops, and every process it started.
        users[1].communicate("\n", timeout=180)
        assert users[1].returncode == 0
        assert cluster.running() is None and not cluster.record.exists()
        deadline = time.monotonic() + 60
        while (left := _cluster_processes(head, port)) and time.monotonic() < deadline:
            time.sleep(1)
        assert left == []
        assert not _pid_alive(head)
    finally:
        for user in users:
            if user.poll() is None:
                user.kill()
                user.wait()
        LocalCluster(registry).stop()  # only if the test failed half-way


@pytest.mark.parametrize("gone", ["dead user", "no user"])
def test_a_user_that_died_does_not_keep_the_cluster(tmp_path: Path, gone: str) -> None:
    """A registered pid that no longer runs is not a user (a SIGKILLed run never keeps the cluster alive)."""
    cluster = LocalCluster(tmp_path)
    cluster.users.mkdir(parents=True)
    if gone == "dead user":
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True)
        (cluster.users / finished.stdout.strip()).touch()
    (cluster.users / str(os.getpid())).touch()
    assert cluster.live_users() == [os.getpid()]
    assert sorted(entry.name for entry in cluster.users.iterdir()) == [str(os.getpid())]
