"""infra_cfn/dagster.yaml is a valid Dagster instance config whose classes import in this environment."""

from __future__ import annotations

import importlib
from pathlib import Path

from dagster._core.instance.config import dagster_instance_config

INFRA = Path(__file__).resolve().parents[2] / "infra_cfn"


def test_instance_config_validates_and_stores_everything_in_postgres() -> None:
    config, _ = dagster_instance_config(str(INFRA), "dagster.yaml")
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert {key: postgres[key] for key in ("hostname", "username", "password", "db_name")} == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"}, "db_name": {"env": "DAGSTER_PG_DB"},
    }
    for section in ("run_coordinator", "run_launcher", "compute_logs"):
        module = importlib.import_module(config[section]["module"])
        assert hasattr(module, config[section]["class"]), section
    importlib.import_module("dagster_postgres")  # the storage the image installs


def test_env_names_match_what_the_task_definitions_set() -> None:
    template = (INFRA / "template.yaml").read_text()
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        assert f"Name: {name}," in template, name
