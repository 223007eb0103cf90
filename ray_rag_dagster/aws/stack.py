"""Create, follow, inspect and delete the stack; move files into its bucket.

Plain functions over boto3 clients, so the CLI stays a thin layer and tests drive the same code against
moto's server. Nothing here reads a secret's value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from ray_rag_dagster.settings import Settings

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
SUCCEEDED = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
INPUT_PREFIX = "input/"


class StackError(RuntimeError):
    """The stack did not reach the state asked for; the message says what to do."""


class AwsClients:
    """boto3 clients for one region and, when set, one endpoint (moto's server, LocalStack)."""

    def __init__(self, settings: Settings) -> None:
        self.region = settings.aws_region
        self.endpoint_url = settings.aws_endpoint_url
        self._session = boto3.session.Session(region_name=settings.aws_region)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service, endpoint_url=self.endpoint_url)
        return self._clients[service]

    @property
    def cloudformation(self) -> Any:
        return self.client("cloudformation")

    @property
    def s3(self) -> Any:
        return self.client("s3")


@dataclass(frozen=True)
class StackEvent:
    logical_id: str
    resource_type: str
    status: str
    reason: str


def describe_stack(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack's description, or None when no such stack exists (deleted stacks are gone)."""
    try:
        return cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def stack_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    stack = describe_stack(cfn, stack_name)
    if stack is None:
        raise StackError(f"stack {stack_name} does not exist: run `ray-rag aws deploy` first")
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def deploy_stack(cfn: Any, stack_name: str, body: str, parameters: dict[str, str]) -> str:
    """Create the stack, or update it; return ``CREATE``, ``UPDATE`` or ``UNCHANGED``.

    On update, required parameters (no default in the template) that are not given keep the stack's current
    values, so ``AdminCidr`` or the secret ARNs need not be repeated; the others come from the parameters
    file, which stays the one description of the deployment.
    """
    given = [{"ParameterKey": key, "ParameterValue": value} for key, value in sorted(parameters.items())]
    stack = describe_stack(cfn, stack_name)
    if stack is None:
        cfn.create_stack(StackName=stack_name, TemplateBody=body, Parameters=given, Capabilities=CAPABILITIES)
        return "CREATE"
    if stack["StackStatus"] == "ROLLBACK_COMPLETE":
        raise StackError(
            f"stack {stack_name} failed to create and cannot be updated: "
            "read its events in the CloudFormation console, then `ray-rag aws teardown` and deploy again"
        )
    declared = json.loads(body).get("Parameters", {})
    kept = [
        {"ParameterKey": item["ParameterKey"], "UsePreviousValue": True}
        for item in stack.get("Parameters", [])
        if item["ParameterKey"] not in parameters and "Default" not in declared.get(item["ParameterKey"], {})
    ]
    try:
        cfn.update_stack(StackName=stack_name, TemplateBody=body, Parameters=given + kept, Capabilities=CAPABILITIES)
    except ClientError as error:
        if "No updates are to be performed" in str(error):
            return "UNCHANGED"
        raise
    return "UPDATE"


def wait_for_stack(
    cfn: Any,
    stack_id: str,
    *,
    on_event: Callable[[StackEvent], None],
    poll_seconds: float = 10.0,
    timeout_seconds: float = 3600.0,
) -> str:
    """Poll until the stack leaves its ``*_IN_PROGRESS`` state, reporting each new event; return the status.

    ``stack_id`` should be the stack's ARN: a deleted stack is found by its ARN (status DELETE_COMPLETE),
    not by its name.
    """
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_seconds
    while True:
        for event in reversed(_recent_events(cfn, stack_id)):
            if event["EventId"] not in seen:
                seen.add(event["EventId"])
                on_event(StackEvent(
                    event["LogicalResourceId"], event["ResourceType"], event["ResourceStatus"],
                    event.get("ResourceStatusReason", ""),
                ))
        stack = describe_stack(cfn, stack_id)
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise StackError(f"stack still {status} after {timeout_seconds:.0f} s: follow it in the console")
        time.sleep(poll_seconds)


def _recent_events(cfn: Any, stack_id: str) -> list[dict[str, Any]]:
    try:
        return cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
    except ClientError as error:
        if "does not exist" in str(error):
            return []
        raise


def upload_files(s3: Any, bucket: str, paths: list[Path]) -> list[str]:
    """Upload files to ``input/`` (the sensor's inbox); return their keys. Missing files fail first."""
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    keys = []
    for path in paths:
        key = INPUT_PREFIX + path.name
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every object version and delete marker (a versioned bucket must be empty to be deleted)."""
    deleted = 0
    try:
        for batch in _version_batches(s3, bucket):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchBucket":
            raise
    return deleted


def _version_batches(s3: Any, bucket: str) -> Iterator[list[dict[str, str]]]:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions = page.get("Versions", []) + page.get("DeleteMarkers", [])
        batch = [{"Key": item["Key"], "VersionId": item["VersionId"]} for item in versions]
        for start in range(0, len(batch), 1000):  # delete_objects takes at most 1000 keys
            yield batch[start:start + 1000]


def control_rows(dynamodb: Any, table: str, limit: int = 200) -> list[dict[str, Any]]:
    """Rows of the control table (one per document version), newest first."""
    deserializer = TypeDeserializer()
    rows: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, PaginationConfig={"MaxItems": limit}):
        rows.extend({key: deserializer.deserialize(value) for key, value in item.items()} for item in page["Items"])
    return sorted(rows, key=lambda row: str(row.get("updated_at", "")), reverse=True)
