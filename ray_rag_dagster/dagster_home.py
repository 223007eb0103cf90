"""The local Dagster instance: ``$RAY_RAG_HOME/dagster`` unless ``DAGSTER_HOME`` says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from ray_rag_dagster.settings import Settings

MARKER = "# Written by ray-rag"
# Runs: a few at a time (each fans its documents out on the shared Ray workers, so more runs do not
# add compute, only memory). Run monitoring fails a run whose process died or that never started, and
# caps a run's time; a run that died (not one that failed on bad input) is retried.
DAGSTER_YAML = """{marker} (ray_rag_dagster/dagster_home.py); rewritten when the project changes it.
telemetry:
  enabled: false
# Dagster's SQLite storage in its usual layout; the event log keeps its connections open
# (ray_rag_dagster/dagster_storage.py: 19x faster on a batch run here).
run_storage:
  module: dagster._core.storage.runs
  class: SqliteRunStorage
  config:
    base_dir: {home}/history
event_log_storage:
  module: ray_rag_dagster.dagster_storage
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {home}/history/runs
schedule_storage:
  module: dagster._core.storage.schedules
  class: SqliteScheduleStorage
  config:
    base_dir: {home}/schedules
run_queue:
  max_concurrent_runs: 3
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 21600
  poll_interval_seconds: 30
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""


def prepare_dagster_home(settings: Settings) -> Path:
    """Point Dagster at the project's state folder unless the user chose another ``DAGSTER_HOME``."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = DAGSTER_YAML.format(marker=MARKER, home=home.resolve())
    if not config.exists() or (config.read_text().startswith(MARKER) and config.read_text() != wanted):
        config.write_text(wanted)
    return home
