"""The deployment's run launcher against a real two-node Ray cluster shaped like the stack's: a head with no CPUs
that offers `dagster_run` slots and the Jobs API (token auth), and a worker with CPUs (tests/infra/ray_launcher_smoke.py).

Each Dagster run becomes a Ray job on the head, runs there as a native driver (`RAY_RAG_RAY_ADDRESS=auto`) and
sends its tasks to the worker; the run worker's log lines reach the "container's" stdout (python_logs handler);
no secret travels in the job's entrypoint. Needs Ray's dashboard (`pip install "ray[default]==2.60.0"`, as the
image has); skipped without it. Minutes on two cores.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import dagster
import pytest

for module in ("aiohttp", "aiohttp_cors", "opencensus", "prometheus_client", "colorful"):
    pytest.importorskip(module, reason="Ray's dashboard and Jobs API need ray[default]")

pytestmark = pytest.mark.slow
PASSWORD = "not-a-real-password"


def test_runs_are_ray_jobs_on_the_head_that_drive_the_workers(tmp_path: Path) -> None:
    home = tmp_path / "home"  # no ~/.ray/auth_token from this machine's other clusters
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "DAGSTER_"))}
    env.update(HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(24), DAGSTER_PG_PASSWORD=PASSWORD,
               # `dagster api execute_run` (the Ray job's entrypoint) must be on the PATH, as /opt/venv/bin is in the image.
               PATH=os.pathsep.join([str(Path(sys.executable).parent), str(Path(dagster.__file__).parents[4] / "bin"),
                                     os.environ["PATH"]]),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    smoke = subprocess.run([sys.executable, str(Path(__file__).with_name("ray_launcher_smoke.py")), str(tmp_path)],
                           env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert smoke.returncode == 0, smoke.stderr[-4000:]
    result = json.loads(smoke.stdout.strip().splitlines()[-1])
    ok, rejected = result["runs"]["drives_ray"], result["runs"]["rejects_input"]
    assert (ok["status"], ok["health"], ok["ray_status"]) == ("SUCCESS", "SUCCESS", "SUCCEEDED")
    assert ok["entrypoint"].startswith("dagster api execute_run")
    assert PASSWORD not in ok["entrypoint"]  # the instance ref carries env references, not their values
    [placement] = ok["placement"]
    assert f"driver={result['head']}" in placement and f"task={result['worker']}" in placement
    assert (rejected["status"], rejected["ray_status"]) == ("FAILURE", "FAILED")
    # INFO and above reach the head's stdout: the op's log line, and RUN_FAILURE (the stack's failed-runs metric).
    assert "PLACEMENT" in result["stdout"] and " - RUN_FAILURE - " in result["stdout"]
