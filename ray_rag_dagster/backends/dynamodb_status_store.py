"""The status store on DynamoDB: the seed's three tables, with atomic claims.

- ``<prefix>-control``: key ``document_id`` (hash) + ``processing_version`` (range).
- ``<prefix>-audit``: key ``document_id`` + ``event_id`` (time-ordered); ``ttl`` (epoch seconds) expires
  items after 180 days through DynamoDB's TTL.
- ``<prefix>-metrics``: key ``day``; counters updated with ``ADD``, so concurrent writers never lose counts.

A claim is one conditional ``UpdateItem``: it succeeds only if no other owner holds an unexpired lease
(and, unless reprocessing, the version is not COMPLETED). Two orchestrators racing for one document get one
success and one ``ConditionalCheckFailedException``, which is reported as a refused claim, not an error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ray_rag_dagster.backends.object_store import aws_client
from ray_rag_dagster.backends.status_store import (
    AUDIT_TTL_DAYS,
    COMPLETED,
    COUNT_FIELDS,
    DELETED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    Claim,
    DocumentStatus,
    StatusStore,
    utc_now,
)

_NAMES = {"#status": "status", "#owner": "owner"}  # both are DynamoDB reserved words


def _number(value: float) -> Decimal:
    return Decimal(str(round(float(value), 6)))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class DynamoDBStatusStore(StatusStore):
    def __init__(self, table_prefix: str, region: str = "us-east-1", endpoint_url: str | None = None) -> None:
        self.client = aws_client("dynamodb", region, endpoint_url)
        import boto3

        resource = boto3.resource("dynamodb", region_name=region, endpoint_url=endpoint_url)
        self.table_names = {kind: f"{table_prefix}-{kind}" for kind in ("control", "audit", "metrics")}
        self.control = resource.Table(self.table_names["control"])
        self.audit_table = resource.Table(self.table_names["audit"])
        self.metrics_table = resource.Table(self.table_names["metrics"])

    def ensure_tables(self) -> None:
        """Create the three tables (on-demand) if missing, as the CloudFormation stack does."""
        existing = set(self.client.list_tables()["TableNames"])
        keys = {
            "control": [("document_id", "HASH"), ("processing_version", "RANGE")],
            "audit": [("document_id", "HASH"), ("event_id", "RANGE")],
            "metrics": [("day", "HASH")],
        }
        for kind, schema in keys.items():
            name = self.table_names[kind]
            if name in existing:
                continue
            self.client.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": attr, "KeyType": key_type} for attr, key_type in schema],
                AttributeDefinitions=[{"AttributeName": attr, "AttributeType": "S"} for attr, _ in schema],
            )
            self.client.get_waiter("table_exists").wait(TableName=name)
            if kind == "audit":
                self.client.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
                )

    # -- rows

    @staticmethod
    def _row(item: dict[str, Any] | None) -> DocumentStatus | None:
        if not item:
            return None
        lease = item.get("lease_expires_at")
        return DocumentStatus(
            document_id=item["document_id"],
            processing_version=item["processing_version"],
            source_key=item["source_key"],
            status=item["status"],
            current_stage=item.get("current_stage"),
            owner=item.get("owner"),
            lease_expires_at=float(lease) if lease is not None else None,
            error=item.get("error"),
            retry_count=int(item.get("retry_count", 0)),
            created_at=item.get("created_at", ""),
            updated_at=item.get("updated_at", ""),
            counts={name: _plain(item[name]) for name in COUNT_FIELDS if name in item},
        )

    def _audit(self, document_id: str, version: str, from_status: str | None, to_status: str,
               stage: str | None, owner: str | None, message: str | None = None) -> None:
        now = datetime.now(timezone.utc)
        item = {
            "document_id": document_id,
            "event_id": f"{now.isoformat(timespec='milliseconds')}#{uuid.uuid4().hex[:8]}",
            "processing_version": version,
            "event_time": now.isoformat(timespec="seconds"),
            "to_status": to_status,
            "ttl": int(now.timestamp()) + AUDIT_TTL_DAYS * 86400,
        }
        optional = {"from_status": from_status, "stage": stage, "owner": owner, "message": message}
        item.update({key: value for key, value in optional.items() if value is not None})
        self.audit_table.put_item(Item=item)

    def _add_metrics(self, **increments: float) -> None:
        day = datetime.now(timezone.utc).date().isoformat()
        names = {f"#m{i}": name for i, name in enumerate(increments)}
        values = {f":m{i}": _number(value) for i, value in enumerate(increments.values())}
        self.metrics_table.update_item(
            Key={"day": day},
            UpdateExpression="ADD " + ", ".join(f"#m{i} :m{i}" for i in range(len(increments))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _key(self, document_id: str, version: str) -> dict[str, str]:
        return {"document_id": document_id, "processing_version": version}

    # -- StatusStore

    def register(self, document_id: str, version: str, source_key: str) -> DocumentStatus:
        now = utc_now()
        item = {**self._key(document_id, version), "source_key": source_key, "status": PENDING,
                "retry_count": 0, "created_at": now, "updated_at": now}
        try:
            self.control.put_item(Item=item, ConditionExpression="attribute_not_exists(document_id)")
        except self.client.exceptions.ConditionalCheckFailedException:
            existing = self.get(document_id, version)
            assert existing is not None
            items = self.control.query(
                KeyConditionExpression="document_id = :d", ExpressionAttributeValues={":d": document_id},
                ConsistentRead=True,
            )["Items"]
            completed = [item for item in items if item.get("status") == COMPLETED]
            indexed = max(completed, key=lambda item: item.get("updated_at", ""), default=None)
            superseded = (indexed is not None and indexed["processing_version"] != version
                          and existing.status in (COMPLETED, FAILED))
            if existing.status == DELETED or superseded:
                try:
                    self.control.update_item(
                        Key=self._key(document_id, version),
                        UpdateExpression="SET #status = :pending, updated_at = :updated"
                        " REMOVE lease_expires_at, #error, current_stage",
                        ConditionExpression="#status = :seen",
                        ExpressionAttributeNames={"#status": "status", "#error": "error"},
                        ExpressionAttributeValues={":pending": PENDING, ":updated": utc_now(), ":seen": existing.status},
                    )
                    self._audit(document_id, version, existing.status, PENDING, None, None,
                                f"{source_key} is back at this version")
                except self.client.exceptions.ConditionalCheckFailedException:
                    pass  # someone else moved it first
                existing = self.get(document_id, version)
                assert existing is not None
            return existing
        self._audit(document_id, version, None, PENDING, None, None, f"registered {source_key}")
        row = self._row(item)
        assert row is not None
        return row

    def get(self, document_id: str, version: str | None = None) -> DocumentStatus | None:
        if version is not None:
            return self._row(self.control.get_item(Key=self._key(document_id, version), ConsistentRead=True).get("Item"))
        items = self.control.query(
            KeyConditionExpression="document_id = :d",
            ExpressionAttributeValues={":d": document_id},
            ConsistentRead=True,
        )["Items"]
        return self._row(max(items, key=lambda item: item.get("updated_at", ""), default=None))

    def claim(self, document_id: str, version: str, owner: str, lease_seconds: int, *, reprocess: bool) -> Claim:
        now = time.time()
        condition = "attribute_exists(document_id) AND (#status <> :in_progress OR lease_expires_at < :now OR #owner = :owner)"
        values: dict[str, Any] = {":in_progress": IN_PROGRESS, ":now": _number(now), ":owner": owner}
        if not reprocess:
            condition += " AND #status <> :completed"
            values[":completed"] = COMPLETED
        try:
            previous = self.control.update_item(
                Key=self._key(document_id, version),
                UpdateExpression="SET #status = :in_progress, #owner = :owner, lease_expires_at = :lease,"
                " updated_at = :updated REMOVE #error, current_stage",
                ConditionExpression=condition,
                ExpressionAttributeNames={**_NAMES, "#error": "error"},
                ExpressionAttributeValues={**values, ":lease": _number(now + lease_seconds), ":updated": utc_now()},
                ReturnValues="ALL_OLD",
            )["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException:
            row = self.get(document_id, version)
            if row is None:
                return Claim(False, f"{document_id} version {version} is not registered")
            if row.status == COMPLETED:
                return Claim(False, "this version is already COMPLETED", row.owner)
            return Claim(False, f"held by {row.owner} (lease until {row.lease_expires_at:.0f})", row.owner)
        self._audit(document_id, version, previous.get("status"), IN_PROGRESS, None, owner, "claimed")
        return Claim(True, "claimed", owner)

    def release(self, document_id: str, version: str, owner: str, reason: str) -> bool:
        try:
            self.control.update_item(
                Key=self._key(document_id, version),
                UpdateExpression="SET #status = :pending, updated_at = :updated REMOVE lease_expires_at",
                ConditionExpression="#status = :in_progress AND #owner = :owner",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":pending": PENDING, ":in_progress": IN_PROGRESS, ":owner": owner,
                                           ":updated": utc_now()},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        self._audit(document_id, version, IN_PROGRESS, PENDING, None, owner, reason)
        return True

    def record_stage(
        self, document_id: str, version: str, stage: str, *, note: str | None = None, **counts: float
    ) -> None:
        unknown = set(counts) - set(COUNT_FIELDS)
        if unknown:
            raise ValueError(f"unknown count fields {sorted(unknown)}")
        sets = ["current_stage = :stage", "updated_at = :updated"] + [f"{name} = :{name}" for name in counts]
        values: dict[str, Any] = {":stage": stage, ":updated": utc_now(),
                                  **{f":{name}": _number(value) for name, value in counts.items()}}
        if note:
            sets.append("#error = :note")
            values[":note"] = note
        self.control.update_item(
            Key=self._key(document_id, version),
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": {"#error": "error"}} if note else {}),
        )
        self._audit(document_id, version, IN_PROGRESS, IN_PROGRESS, stage, None,
                    f"{stage} done" + (f": {note}" if note else ""))

    def renew(self, document_id: str, version: str, owner: str, lease_seconds: int) -> bool:
        try:
            self.control.update_item(
                Key=self._key(document_id, version),
                UpdateExpression="SET lease_expires_at = :lease",
                ConditionExpression="#status = :in_progress AND #owner = :owner",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":lease": _number(time.time() + lease_seconds),
                                           ":in_progress": IN_PROGRESS, ":owner": owner},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def complete(self, document_id: str, version: str, owner: str | None = None) -> bool:
        condition = "attribute_exists(document_id) AND #status <> :deleted"
        values: dict[str, Any] = {":completed": COMPLETED, ":updated": utc_now(), ":deleted": DELETED}
        if owner is not None:
            condition += " AND #status = :in_progress AND #owner = :owner"
            values |= {":in_progress": IN_PROGRESS, ":owner": owner}
        try:
            row = self.control.update_item(
                Key=self._key(document_id, version),
                UpdateExpression="SET #status = :completed, updated_at = :updated REMOVE lease_expires_at",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", **({"#owner": "owner"} if owner is not None else {})},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        self._audit(document_id, version, IN_PROGRESS, COMPLETED, row.get("current_stage"), row.get("owner"))
        counts = {name: float(row.get(name, 0)) for name in ("pages", "chunks", "tokens", "cost_usd", "seconds")}
        self._add_metrics(documents_completed=1, **counts)
        return True

    def fail(self, document_id: str, version: str, stage: str, error: str) -> None:
        previous = self.control.update_item(
            Key=self._key(document_id, version),
            UpdateExpression="SET #status = :failed, current_stage = :stage, #error = :error, updated_at = :updated"
            " REMOVE lease_expires_at ADD retry_count :one",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={":failed": FAILED, ":stage": stage, ":error": error, ":updated": utc_now(),
                                       ":one": 1},
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
        self._audit(document_id, version, previous.get("status"), FAILED, stage, previous.get("owner"), error)
        self._add_metrics(documents_failed=1)

    def mark_deleted(self, document_id: str, version: str, reason: str) -> None:
        previous = self.control.update_item(
            Key=self._key(document_id, version),
            UpdateExpression="SET #status = :deleted, updated_at = :updated REMOVE lease_expires_at, #error",
            ExpressionAttributeNames={"#status": "status", "#error": "error"},
            ExpressionAttributeValues={":deleted": DELETED, ":updated": utc_now()},
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
        self._audit(document_id, version, previous.get("status"), DELETED, None, None, reason)

    def documents(self) -> list[DocumentStatus]:
        latest: dict[str, dict[str, Any]] = {}
        for item in _scan(self.control):
            current = latest.get(item["document_id"])
            if current is None or item.get("updated_at", "") > current.get("updated_at", ""):
                latest[item["document_id"]] = item
        return [row for row in (self._row(latest[key]) for key in sorted(latest)) if row is not None]

    def completed_versions(self) -> dict[str, str]:
        completed = sorted(
            (item.get("updated_at", ""), item["document_id"], item["processing_version"])
            for item in _scan(self.control) if item.get("status") == COMPLETED
        )
        return {document_id: version for _, document_id, version in completed}  # the latest wins

    def audit(self, document_id: str) -> list[dict[str, Any]]:
        items = self.audit_table.query(
            KeyConditionExpression="document_id = :d", ExpressionAttributeValues={":d": document_id}
        )["Items"]
        blank = {"from_status": None, "stage": None, "owner": None, "message": None}
        events = [{**blank, **{key: _plain(value) for key, value in item.items()}} for item in items]
        return sorted(events, key=lambda event: event["event_id"])

    def metrics(self) -> list[dict[str, Any]]:
        items = list(_scan(self.metrics_table))
        rows = []
        for item in sorted(items, key=lambda item: item["day"]):
            row = {"day": item["day"]}
            for name in ("documents_completed", "documents_failed", "pages", "chunks", "tokens", "cost_usd", "seconds"):
                row[name] = _plain(item.get(name, Decimal(0)))
            rows.append(row)
        return rows


def _scan(table: Any) -> Iterator[dict[str, Any]]:
    """Every item of a table, following DynamoDB's 1 MB scan pages."""
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
