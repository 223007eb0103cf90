"""Run by tests/infra/test_run_launcher_on_ray.py in a fresh process (Ray's token loader reads its sources once per
process, and this machine's other clusters leave tokens in ~/.ray): start a two-node cluster shaped like the stack's,
launch two Dagster runs through the deployment's run launcher, print what happened as one JSON line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra_cfn"
DEFS = Path(__file__).with_name("ray_job_defs.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def deployment_instance_yaml(stdout_path: str) -> str:
    """infra_cfn/dagster.yaml with the launcher, monitoring, retries and log handler as deployed; SQLite storage
    instead of PostgreSQL, runs launched at once instead of queued for a daemon."""
    config = yaml.safe_load((INFRA / "dagster.yaml").read_text())
    del config["storage"]
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    config["python_logs"]["dagster_handler_config"]["handlers"]["container_stdout"]["filename"] = stdout_path
    return yaml.safe_dump(config)


def main(work: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    port = free_port()
    # The stack's shape: a head with no CPUs, the run slots and the Jobs API; a worker with the CPUs.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "resources": {"dagster_run": 2}, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": port, "object_store_memory": 80 * 1024**2})
    worker = cluster.add_node(num_cpus=2, object_store_memory=80 * 1024**2)
    ray.init(address=cluster.address)
    try:
        from dagster import DagsterInstance
        from ray.job_submission import JobSubmissionClient

        stdout = work / "container-stdout.log"
        home = work / "dagster"
        home.mkdir()
        (home / "dagster.yaml").write_text(deployment_instance_yaml(str(stdout)))
        os.environ.update(DAGSTER_HOME=str(home), DAGSTER_RAY_JOBS_ADDRESS=f"http://127.0.0.1:{port}",
                          DAGSTER_MAX_CONCURRENT_RUNS="2")
        for job in ("drives_ray", "rejects_input"):
            subprocess.run([sys.executable, "-m", "dagster", "job", "launch", "-f", str(DEFS), "-j", job],
                           capture_output=False, stdout=sys.stderr, timeout=300, check=True)
        instance = DagsterInstance.get()
        client = JobSubmissionClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 420
        while not all(run.is_finished for run in instance.get_runs()) and time.monotonic() < deadline:
            # No daemon here to notice a Ray job that died before its run worker reported: stop waiting then.
            if all(job.status.is_terminal() for job in client.list_jobs() if job.submission_id):
                time.sleep(10)
                break
            time.sleep(3)
        # A run worker reports the run's end, then exits: its Ray job turns terminal a moment later.
        settle = time.monotonic() + 120
        while not all(job.status.is_terminal() for job in client.list_jobs() if job.submission_id) and time.monotonic() < settle:
            time.sleep(2)
        jobs = {job.submission_id: job for job in client.list_jobs() if job.submission_id}
        result = {"head": cluster.head_node.node_id, "worker": worker.node_id, "runs": {}, "stdout": stdout.read_text()}
        for run in instance.get_runs():
            job = jobs[f"dagster-run-{run.run_id}"]
            logs = client.get_job_logs(job.submission_id)
            result["runs"][run.job_name] = {
                "status": run.status.value, "health": instance.run_launcher.check_run_worker_health(run).status.value,
                "ray_status": str(job.status), "entrypoint": job.entrypoint,
                "placement": [line for line in logs.splitlines() if "PLACEMENT" in line],
            }
        return result
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
