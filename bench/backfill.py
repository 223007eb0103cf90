"""One backfill of 1,000 tiny documents, launched the way the UI's asset graph launches it.

Fresh state folder; ``ray-rag dev --port <free>`` (webserver + daemon, and with the new code the shared Ray).
The inbox sensor is stopped first (GraphQL ``stopSensor``) so that only the backfill launches runs. Then, in a
subprocess of the code under test, 1,000 one-page generated PDFs go into the inbox, their versions are
registered in the status store and their partitions added (what the sensor does, without its run requests).
Then one **asset backfill** of every partitioned asset over all 1,000 partitions, through the webserver's
GraphQL ``launchPartitionBackfill`` (partition names + asset selection: the asset graph's "Materialize" →
backfill; a backfill launched from a job page ignores the BackfillPolicy, dagster #18158), executed by the
daemon. Checked on dagster 1.13.27 with a toy definition (two assets on dynamic partitions,
``BackfillPolicy.multi_run(max_partitions_per_run=3)``): this mutation over 7 partitions launched 3 runs
(d0–d2, d3–d5, d6), each materializing both assets. Wait until the backfill is done and every document is
COMPLETED or FAILED.

Reported: runs of the backfill (target ≤ ⌈1000/N⌉, N = ``RAY_RAG_PARTITIONS_PER_RUN``, default 25), seconds
from the launch to the last document COMPLETED, and **Dagster seconds per document** =
(backfill seconds − direct seconds) ÷ documents, where *direct seconds* is the same documents through
``ray_rag_dagster.compute.flow.run_stages`` (no Dagster) on a fresh state folder's shared Ray after a warm-up
(bench/flow_child.py). It is what batching into runs, launching them and Dagster's bookkeeping add per document.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from bench.common import progress_line, scratch_dir
from bench.generated import write_small_pdfs
from bench.harness import (
    Side, Watch, dagster_runs, graphql, new_side, require_direct_path, run_flow_child, start_dev, status_counts,
    stop_service, stop_state_processes, wait_daemon,
)

DOCUMENTS, QUICK_DOCUMENTS = 1000, 20
DEFAULT_PARTITIONS_PER_RUN = 25
TIMEOUT_SECONDS = 3 * 3600
DONE_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

_REPOSITORIES = """
query { repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name }
  sensors { id name sensorState { status } } } } ... on PythonError { message } } }
"""
_STOP_SENSOR = """
mutation($id: String) { stopSensor(id: $id) { __typename ... on StopSensorMutationResult { instigationState {
  status } } ... on PythonError { message } } }
"""
_ASSETS = "query { assetNodes { assetKey { path } isPartitioned } }"
_LAUNCH = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }
"""


def partitions_per_run() -> int:
    return int(os.environ.get("RAY_RAG_PARTITIONS_PER_RUN", DEFAULT_PARTITIONS_PER_RUN))


def stop_sensors(port: int) -> list[str]:
    stopped = []
    data = graphql(port, _REPOSITORIES)["repositoriesOrError"]
    if data["__typename"] != "RepositoryConnection":
        raise RuntimeError(f"no repositories: {data}")
    for repository in data["nodes"]:
        for sensor in repository["sensors"]:
            if sensor["sensorState"]["status"] == "RUNNING":
                answer = graphql(port, _STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
                if answer["__typename"] != "StopSensorMutationResult":
                    raise RuntimeError(f"could not stop sensor {sensor['name']}: {answer}")
                stopped.append(sensor["name"])
    return stopped


def launch_backfill(port: int, partition_keys: list[str]) -> tuple[str, list[str]]:
    assets = [node["assetKey"] for node in graphql(port, _ASSETS)["assetNodes"] if node["isPartitioned"]]
    params = {"partitionNames": partition_keys, "assetSelection": assets, "fromFailure": False,
              "title": f"bench: {len(partition_keys)} documents"}
    answer = graphql(port, _LAUNCH, {"params": params})["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {answer}")
    return answer["backfillId"], ["/".join(a["path"]) for a in assets]


def _backfill_state(home: Path, backfill_id: str) -> tuple[str, dict[str, Any]]:
    import dagster as dg
    from dagster._core.storage.dagster_run import RunsFilter

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        backfill = instance.get_backfill(backfill_id)
        status = backfill.status.value if backfill else "MISSING"
        records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
    runs: dict[str, Any] = {"runs": len(records), "by_status": {}}
    for record in records:
        name = record.dagster_run.status.value
        runs["by_status"][name] = runs["by_status"].get(name, 0) + 1
    launch = [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]
    durations = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
    runs["create_to_start_seconds_sum"] = round(sum(launch), 1)
    runs["run_seconds_sum"] = round(sum(durations), 1)
    runs["run_seconds_max"] = round(max(durations), 1) if durations else None
    return status, runs


def backfill(side: Side, home: Path, folder: Path, paths: list[Path], update: Any) -> dict[str, Any]:
    dev, port, ready = start_dev(side, home, folder, "backfill")
    result: dict[str, Any] = {"port": port, "webserver_ready_seconds": round(ready, 1)}
    try:
        result["daemon_ready_seconds"] = round(wait_daemon(home, "BACKFILL", dev), 1)
        result["sensors_stopped"] = stop_sensors(port)
        registered = run_flow_child(side, home, folder, {"mode": "register", "paths": [str(p) for p in paths]},
                                    "backfill-register", stop_after=False)
        result["register_seconds"] = registered["seconds"]
        watch = Watch(home)
        launched = time.time()
        backfill_id, assets = launch_backfill(port, registered["partition_keys"])
        result.update({"backfill_id": backfill_id, "assets": assets,
                       "launch_mutation_seconds": round(time.time() - launched, 2)})
        status, counts, last_completed, completed = "REQUESTED", {}, None, 0
        while time.time() - launched < TIMEOUT_SECONDS:
            watch.sample()
            counts = status_counts(home)
            if counts.get("COMPLETED", 0) > completed:
                completed, last_completed = counts["COMPLETED"], time.time()
            status, runs = _backfill_state(home, backfill_id)
            done = counts.get("COMPLETED", 0) + counts.get("FAILED", 0)
            update(completed=done, description=f"backfill of {len(paths)}: {status}, {runs['runs']} runs, "
                   f"{counts.get('COMPLETED', 0)} completed, {counts.get('FAILED', 0)} failed")
            if status in DONE_STATUSES and done >= len(paths):
                break
            if status in DONE_STATUSES and time.time() - launched > 60 and runs["by_status"].keys() <= {
                    "SUCCESS", "FAILURE", "CANCELED"} and done < len(paths):
                # the backfill ended, but not every document did: note it and stop waiting
                result["documents_not_done"] = len(paths) - done
                break
            if dev.poll() is not None:
                raise RuntimeError(f"ray-rag dev exited ({dev.returncode}); see {folder / 'backfill-dev.log'}")
            time.sleep(1.0)
        else:
            result["timed_out"] = True
        ended = time.time()
        status, runs = _backfill_state(home, backfill_id)
        result.update({
            "backfill_status": status,
            "statuses": counts,
            "launch_to_done_seconds": round(ended - launched, 1),
            "launch_to_last_completed_seconds": round(last_completed - launched, 1) if last_completed else None,
            "backfill_runs": runs,
            **watch.summary(),
        })
    finally:
        result["stop"] = stop_service(dev)
        result["cleanup"] = stop_state_processes(home)
    result["all_runs"] = dagster_runs(home / "dagster")
    if result.get("timed_out") or result["statuses"].get("FAILED"):
        result["dev_log_tail"] = (folder / "backfill-dev.log").read_text(errors="replace")[-3000:]
    return result


def run(quick: bool) -> dict[str, Any]:
    count = QUICK_DOCUMENTS if quick else DOCUMENTS
    side = new_side()
    per_run = partitions_per_run()
    with scratch_dir("backfill") as folder:
        paths = write_small_pdfs(folder / "docs", count, prefix="tiny", pages=(1, 1))
        warmup = write_small_pdfs(folder / "warmup", 2, prefix="warmup", pages=(1, 1))
        with progress_line(f"backfill of {count} documents", total=count) as update:
            result = backfill(side, folder / "backfill-home", folder, paths, update)
        try:
            require_direct_path(side)
            with progress_line(f"direct reference: {count} documents through run_stages"):
                direct = run_flow_child(side, folder / "direct-home", folder,
                                        {"mode": "direct", "warmup": [str(p) for p in warmup],
                                         "paths": [str(p) for p in paths]}, "backfill-direct")
            direct_seconds = direct["measured"]["seconds"]
            direct_result: dict[str, Any] = {"seconds": direct_seconds, "failures": len(direct["measured"]["failures"]),
                                             "warmup_seconds": direct["warmup"]["seconds"]}
        except Exception as exc:  # noqa: BLE001 - the backfill numbers stand without it
            direct_seconds, direct_result = None, {"error": f"{type(exc).__name__}: {exc}"[:1000]}
    backfill_seconds = result.get("launch_to_last_completed_seconds") or result["launch_to_done_seconds"]
    runs = result["backfill_runs"]["runs"]
    return {
        "documents": count,
        "partitions_per_run": per_run,
        "new_code": str(side.code),
        "backfill": result,
        "runs": runs,
        "target_max_runs": math.ceil(count / per_run),
        "runs_within_target": runs <= math.ceil(count / per_run),
        "backfill_seconds": backfill_seconds,
        "direct": direct_result,
        "dagster_seconds_per_document": (
            round((backfill_seconds - direct_seconds) / count, 3) if direct_seconds is not None else None),
        "seconds_per_document": round(backfill_seconds / count, 3),
        "definition": "dagster_seconds_per_document = (launch → last document COMPLETED − the same documents "
                      "through compute.flow.run_stages on a warm shared Ray) ÷ documents",
    }
