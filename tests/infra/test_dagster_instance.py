"""infra_cfn/dagster.yaml is a valid Dagster instance config whose classes import in this environment: runs are
Ray jobs (dagster-ray's RayRunLauncher), concurrency follows the worker pool, runs are monitored and crashed runs
retried."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData
from dagster_ray import RayRunLauncher

from ray_rag_dagster.aws.template import load_template

INFRA = Path(__file__).resolve().parents[2] / "infra_cfn"
ENV = {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "not-a-password",
       "DAGSTER_PG_DB": "dagster", "DAGSTER_RAY_JOBS_ADDRESS": "http://ray-head.ray-rag.internal:8265",
       "DAGSTER_MAX_CONCURRENT_RUNS": "10"}


@pytest.fixture()
def config(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    value, _ = dagster_instance_config(str(INFRA), "dagster.yaml")
    return value


def rehydrate(section: dict[str, Any]) -> Any:
    return ConfigurableClassData(section["module"], section["class"], yaml.dump(section.get("config", {}))).rehydrate(object)


def test_instance_config_validates_and_stores_everything_in_postgres(config: dict[str, Any]) -> None:
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert {key: postgres[key] for key in ("hostname", "username", "password", "db_name")} == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"}, "db_name": {"env": "DAGSTER_PG_DB"},
    }
    for section in ("run_coordinator", "run_launcher", "compute_logs"):
        module = importlib.import_module(config[section]["module"])
        assert hasattr(module, config[section]["class"]), section
    importlib.import_module("dagster_postgres")  # the storage the image installs


def test_each_run_is_a_ray_job_on_the_heads_run_slots_as_a_native_driver(config: dict[str, Any]) -> None:
    launcher = rehydrate(config["run_launcher"])
    assert isinstance(launcher, RayRunLauncher)
    assert launcher.address == ENV["DAGSTER_RAY_JOBS_ADDRESS"]  # the Jobs API (dashboard port), not ray://
    assert launcher.resources == {"dagster_run": 1.0} and not launcher.num_cpus
    assert "RAY_RAG_RAY_ADDRESS=auto" in launcher.env_vars
    assert not any(word in item for item in launcher.env_vars for word in ("PASSWORD", "KEY", "TOKEN"))
    # No FilesystemIOManager or other run-local storage is configured for the deployment.
    assert "io_manager" not in (INFRA / "dagster.yaml").read_text().lower()


def test_concurrency_follows_the_worker_pool(config: dict[str, Any]) -> None:
    coordinator = rehydrate(config["run_coordinator"])
    assert type(coordinator).__name__ == "QueuedRunCoordinator"
    assert coordinator.get_run_queue_config().max_concurrent_runs == 10  # = DAGSTER_MAX_CONCURRENT_RUNS
    template = load_template()
    resources = template["Resources"]
    head = resources["RayHeadTask"]["Properties"]["ContainerDefinitions"][0]
    assert {"Fn::Sub": '--resources={"dagster_run": ${MaxWorkers}}'} in head["Command"]
    for task in ("RayHeadTask", "DagsterDaemonTask", "DagsterWebserverTask"):
        env = {item["Name"]: item["Value"] for item in resources[task]["Properties"]["ContainerDefinitions"][0]["Environment"]}
        assert env["DAGSTER_MAX_CONCURRENT_RUNS"] == {"Ref": "MaxWorkers"}, task
        assert env["DAGSTER_RAY_JOBS_ADDRESS"] == {"Fn::Sub": "http://ray-head.${ProjectName}.internal:8265"}, task


def test_runs_are_monitored_and_only_crashed_runs_are_retried(config: dict[str, Any]) -> None:
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["start_timeout_seconds"] > 0 and monitoring["cancel_timeout_seconds"] > 0
    assert 0 < monitoring["max_runtime_seconds"] <= 24 * 3600
    retries = config["run_retries"]
    assert retries == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert RayRunLauncher(address="http://x:8265").supports_check_run_worker_health  # monitoring can see crashes


def test_run_worker_log_lines_reach_the_heads_log_group(config: dict[str, Any]) -> None:
    handler = config["python_logs"]["dagster_handler_config"]["handlers"]["container_stdout"]
    assert handler["filename"] == "/proc/1/fd/1" and handler["delay"] is True
    metric = load_template()["Resources"]["FailedRunsMetric"]["Properties"]
    assert metric["LogGroupName"] == {"Ref": "RayHeadLogs"} and "RUN_FAILURE" in metric["FilterPattern"]


def test_env_names_match_what_the_task_definitions_set() -> None:
    text = (INFRA / "dagster.yaml").read_text()
    names = set(re.findall(r"env: ([A-Z_]+)", text))
    assert names == {"DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB",
                     "DAGSTER_RAY_JOBS_ADDRESS", "DAGSTER_MAX_CONCURRENT_RUNS"}
    resources = load_template()["Resources"]
    # Every process that loads the instance: the webserver, the daemon and the run workers on the Ray head.
    for task in ("RayHeadTask", "DagsterDaemonTask", "DagsterWebserverTask"):
        container = resources[task]["Properties"]["ContainerDefinitions"][0]
        given = {item["Name"] for item in container["Environment"]} | {item["Name"] for item in container["Secrets"]}
        assert names <= given, (task, names - given)
