"""Document status mirrored to a store with the seed's three-table model.

- control: one row per (document_id, processing_version): status, current stage, timestamps, error,
  retry count, counts and cost, and the lease of the run that holds it.
- audit: one row per status transition.
- metrics: one row per day, counters added to atomically.

``processing_version`` is the content hash of the source PDF, so a changed file is a new version and an
identical re-upload is the same one. Claiming a version is atomic: two orchestrators (the CLI and a running
``dagster dev`` sensor, or two deployments) never process the same version at the same time.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

PENDING, IN_PROGRESS, COMPLETED, FAILED, DELETED = "PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "DELETED"
COUNT_FIELDS = ("pages", "chunks", "vectors", "tokens", "cost_usd", "seconds")
AUDIT_TTL_DAYS = 180


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class DocumentStatus:
    document_id: str
    processing_version: str
    source_key: str
    status: str
    current_stage: str | None = None
    owner: str | None = None
    lease_expires_at: float | None = None
    error: str | None = None
    retry_count: int = 0
    created_at: str = ""
    updated_at: str = ""
    counts: dict[str, float] = field(default_factory=dict)

    def is_leased(self, now: float | None = None) -> bool:
        return (
            self.status == IN_PROGRESS
            and self.lease_expires_at is not None
            and self.lease_expires_at > (now or time.time())
        )


@dataclass(frozen=True)
class Claim:
    granted: bool
    reason: str
    holder: str | None = None


class StatusStore(abc.ABC):
    """Control, audit and metrics for documents moving through the stages."""

    @abc.abstractmethod
    def register(self, document_id: str, version: str, source_key: str) -> DocumentStatus:
        """Create a PENDING row for this version unless one exists; return the current row.

        An existing row goes back to PENDING when the version comes back: after a delete (DELETED), or
        after another version of the document was processed since (a revert v1 → v2 → v1 re-indexes v1).
        """

    @abc.abstractmethod
    def get(self, document_id: str, version: str | None = None) -> DocumentStatus | None:
        """The row of ``version``, or the most recently updated version of the document."""

    @abc.abstractmethod
    def claim(
        self, document_id: str, version: str, owner: str, lease_seconds: int, *, reprocess: bool
    ) -> Claim:
        """Atomically move the version to IN_PROGRESS for ``owner``.

        Refused while another owner holds an unexpired lease, and — unless ``reprocess`` — when the
        version is already COMPLETED.
        """

    @abc.abstractmethod
    def release(self, document_id: str, version: str, owner: str, reason: str) -> bool:
        """Give up ``owner``'s claim on an unfinished version (back to PENDING, no lease); True if it held one."""

    @abc.abstractmethod
    def record_stage(
        self, document_id: str, version: str, stage: str, *, note: str | None = None, **counts: float
    ) -> None:
        """Note that ``stage`` finished; set the given counts. ``note`` (what went partly wrong, e.g. pages
        docling could not convert) goes into the row's ``error`` detail and the audit message."""

    @abc.abstractmethod
    def complete(self, document_id: str, version: str, owner: str | None = None) -> bool:
        """COMPLETED, if ``owner`` (when given) still holds the claim and the version was not deleted.

        Conditional: a run that lost its claim (lease expired and taken over) or whose document was
        deleted meanwhile does not count; it gets False and must undo what it loaded.
        """

    @abc.abstractmethod
    def renew(self, document_id: str, version: str, owner: str, lease_seconds: int) -> bool:
        """Extend ``owner``'s lease (a heartbeat while it works); False if it no longer holds the claim."""

    @abc.abstractmethod
    def fail(self, document_id: str, version: str, stage: str, error: str) -> None: ...

    @abc.abstractmethod
    def mark_deleted(self, document_id: str, version: str, reason: str) -> None:
        """The source PDF was deleted and the document's outputs removed."""

    @abc.abstractmethod
    def documents(self) -> list[DocumentStatus]:
        """The latest version of every document."""

    @abc.abstractmethod
    def completed_versions(self) -> dict[str, str]:
        """Each document's version that search may serve: its most recently COMPLETED one."""

    @abc.abstractmethod
    def audit(self, document_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def metrics(self) -> list[dict[str, Any]]: ...


class CompletedVersions:
    """Each document's completed version from the status store, re-read at most every ``ttl_s`` seconds (a
    search server asks on every query; on DynamoDB the answer is a scan)."""

    def __init__(self, status: StatusStore, ttl_s: float = 2.0) -> None:
        self.status, self.ttl_s = status, ttl_s
        self._versions: Mapping[str, str] = {}
        self._read_at = -float("inf")

    def __call__(self) -> Mapping[str, str]:
        if time.monotonic() - self._read_at > self.ttl_s:
            self._versions = self.status.completed_versions()
            self._read_at = time.monotonic()
        return self._versions
