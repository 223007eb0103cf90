"""The status store in a local SQLite database (the embedded default): the three tables of
:mod:`ray_rag_dagster.backends.status_store` with the same conditional updates, each in one transaction."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS control (
    document_id TEXT NOT NULL,
    processing_version TEXT NOT NULL,
    source_key TEXT NOT NULL,
    status TEXT NOT NULL,
    current_stage TEXT,
    owner TEXT,
    lease_expires_at REAL,
    error TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    pages INTEGER, chunks INTEGER, vectors INTEGER, tokens INTEGER, cost_usd REAL, seconds REAL,
    PRIMARY KEY (document_id, processing_version)
);
CREATE TABLE IF NOT EXISTS audit (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL,
    processing_version TEXT NOT NULL,
    event_time TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    stage TEXT,
    owner TEXT,
    message TEXT,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_document ON audit (document_id, event_id);
CREATE TABLE IF NOT EXISTS metrics (
    day TEXT PRIMARY KEY,
    documents_completed INTEGER NOT NULL DEFAULT 0,
    documents_failed INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0
);
"""


class SqliteStatusStore(StatusStore):
    """The local status store: one SQLite file, safe for several processes (WAL, immediate transactions)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connect().executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread, kept open: opening and closing a WAL database costs an fsync each
        # time (~30 ms here), and a batch run writes several rows per document and stage.
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; persistent per file
            # A commit does not wait for fsync: a power cut may lose the last transitions, never corrupt.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate transaction: the write lock is taken up front, so read-check-write is atomic."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction (one consistent snapshot) that takes no write lock: with WAL, readers never
        wait for a writer, so the flow's checks before each stage never queue behind the run's writes."""
        db = self._connect()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    @staticmethod
    def _row(row: sqlite3.Row | None) -> DocumentStatus | None:
        if row is None:
            return None
        counts = {name: row[name] for name in COUNT_FIELDS if row[name] is not None}
        return DocumentStatus(
            document_id=row["document_id"],
            processing_version=row["processing_version"],
            source_key=row["source_key"],
            status=row["status"],
            current_stage=row["current_stage"],
            owner=row["owner"],
            lease_expires_at=row["lease_expires_at"],
            error=row["error"],
            retry_count=row["retry_count"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            counts=counts,
        )

    def _get(self, db: sqlite3.Connection, document_id: str, version: str) -> DocumentStatus | None:
        cursor = db.execute(
            "SELECT * FROM control WHERE document_id = ? AND processing_version = ?", (document_id, version)
        )
        return self._row(cursor.fetchone())

    @staticmethod
    def _audit(
        db: sqlite3.Connection,
        document_id: str,
        version: str,
        from_status: str | None,
        to_status: str,
        stage: str | None,
        owner: str | None,
        message: str | None = None,
    ) -> None:
        now = datetime.now(timezone.utc)
        expires = datetime.fromtimestamp(now.timestamp() + AUDIT_TTL_DAYS * 86400, timezone.utc)
        db.execute(
            "INSERT INTO audit (document_id, processing_version, event_time, from_status, to_status, stage,"
            " owner, message, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (document_id, version, now.isoformat(timespec="seconds"), from_status, to_status, stage, owner,
             message, expires.isoformat(timespec="seconds")),
        )
        # Mirrors DynamoDB's TTL on the audit table.
        db.execute("DELETE FROM audit WHERE expires_at < ?", (now.isoformat(timespec="seconds"),))

    def register(self, document_id: str, version: str, source_key: str) -> DocumentStatus:
        with self._transaction() as db:
            existing = self._get(db, document_id, version)
            if existing is not None:
                indexed = db.execute(
                    "SELECT processing_version FROM control WHERE document_id = ? AND status = ?"
                    " ORDER BY updated_at DESC, rowid DESC LIMIT 1", (document_id, COMPLETED),
                ).fetchone()
                superseded = (indexed is not None and indexed[0] != version
                              and existing.status in (COMPLETED, FAILED))
                if existing.status == DELETED or superseded:
                    db.execute(
                        "UPDATE control SET status = ?, error = NULL, lease_expires_at = NULL, current_stage = NULL,"
                        " updated_at = ? WHERE document_id = ? AND processing_version = ?",
                        (PENDING, utc_now(), document_id, version),
                    )
                    self._audit(db, document_id, version, existing.status, PENDING, None, None,
                                f"{source_key} is back at this version")
                    existing = self._get(db, document_id, version)
                    assert existing is not None
                return existing
            now = utc_now()
            db.execute(
                "INSERT INTO control (document_id, processing_version, source_key, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (document_id, version, source_key, PENDING, now, now),
            )
            self._audit(db, document_id, version, None, PENDING, None, None, f"registered {source_key}")
            row = self._get(db, document_id, version)
            assert row is not None
            return row

    def get(self, document_id: str, version: str | None = None) -> DocumentStatus | None:
        with self._read() as db:
            if version is not None:
                return self._get(db, document_id, version)
            cursor = db.execute(
                "SELECT * FROM control WHERE document_id = ? ORDER BY updated_at DESC, rowid DESC LIMIT 1",
                (document_id,),
            )
            return self._row(cursor.fetchone())

    def claim(
        self, document_id: str, version: str, owner: str, lease_seconds: int, *, reprocess: bool
    ) -> Claim:
        with self._transaction() as db:
            row = self._get(db, document_id, version)
            if row is None:
                return Claim(False, f"{document_id} version {version} is not registered")
            if row.is_leased() and row.owner != owner:
                return Claim(False, f"held by {row.owner} (lease until {row.lease_expires_at:.0f})", row.owner)
            if row.status == COMPLETED and not reprocess:
                return Claim(False, "this version is already COMPLETED", row.owner)
            db.execute(
                "UPDATE control SET status = ?, owner = ?, lease_expires_at = ?, error = NULL,"
                " current_stage = NULL, updated_at = ? WHERE document_id = ? AND processing_version = ?",
                (IN_PROGRESS, owner, time.time() + lease_seconds, utc_now(), document_id, version),
            )
            self._audit(db, document_id, version, row.status, IN_PROGRESS, None, owner, "claimed")
            return Claim(True, "claimed", owner)

    def release(self, document_id: str, version: str, owner: str, reason: str) -> bool:
        with self._transaction() as db:
            row = self._get(db, document_id, version)
            if row is None or row.status != IN_PROGRESS or row.owner != owner:
                return False
            db.execute(
                "UPDATE control SET status = ?, lease_expires_at = NULL, updated_at = ?"
                " WHERE document_id = ? AND processing_version = ?",
                (PENDING, utc_now(), document_id, version),
            )
            self._audit(db, document_id, version, IN_PROGRESS, PENDING, row.current_stage, owner, reason)
            return True

    def record_stage(
        self, document_id: str, version: str, stage: str, *, note: str | None = None, **counts: float
    ) -> None:
        unknown = set(counts) - set(COUNT_FIELDS)
        if unknown:
            raise ValueError(f"unknown count fields {sorted(unknown)}")
        fields = {**counts, **({"error": note} if note else {})}
        assignments = "".join(f", {name} = ?" for name in fields)
        with self._transaction() as db:
            row = self._get(db, document_id, version)
            db.execute(
                f"UPDATE control SET current_stage = ?, updated_at = ?{assignments}"
                " WHERE document_id = ? AND processing_version = ?",
                (stage, utc_now(), *fields.values(), document_id, version),
            )
            self._audit(db, document_id, version, row.status if row else None, IN_PROGRESS, stage,
                        row.owner if row else None, f"{stage} done" + (f": {note}" if note else ""))

    def renew(self, document_id: str, version: str, owner: str, lease_seconds: int) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE control SET lease_expires_at = ? WHERE document_id = ? AND processing_version = ?"
                " AND status = ? AND owner = ?",
                (time.time() + lease_seconds, document_id, version, IN_PROGRESS, owner),
            )
            return cursor.rowcount == 1

    def complete(self, document_id: str, version: str, owner: str | None = None) -> bool:
        with self._transaction() as db:
            row = self._get(db, document_id, version)
            if row is None:
                raise KeyError(f"{document_id} version {version} is not registered")
            if row.status == DELETED or (owner is not None and (row.status != IN_PROGRESS or row.owner != owner)):
                return False
            db.execute(
                "UPDATE control SET status = ?, lease_expires_at = NULL, updated_at = ?"
                " WHERE document_id = ? AND processing_version = ?",
                (COMPLETED, utc_now(), document_id, version),
            )
            self._audit(db, document_id, version, row.status, COMPLETED, row.current_stage, row.owner)
            counts = {name: row.counts.get(name, 0) or 0 for name in ("pages", "chunks", "tokens", "cost_usd",
                                                                       "seconds")}
            self._add_metrics(db, documents_completed=1, **counts)
            return True

    def fail(self, document_id: str, version: str, stage: str, error: str) -> None:
        with self._transaction() as db:
            row = self._get(db, document_id, version)
            from_status = row.status if row else None
            db.execute(
                "UPDATE control SET status = ?, current_stage = ?, error = ?, lease_expires_at = NULL,"
                " retry_count = retry_count + 1, updated_at = ? WHERE document_id = ? AND processing_version = ?",
                (FAILED, stage, error, utc_now(), document_id, version),
            )
            self._audit(db, document_id, version, from_status, FAILED, stage, row.owner if row else None, error)
            self._add_metrics(db, documents_failed=1)

    def mark_deleted(self, document_id: str, version: str, reason: str) -> None:
        with self._transaction() as db:
            row = self._get(db, document_id, version)
            db.execute(
                "UPDATE control SET status = ?, error = NULL, lease_expires_at = NULL, updated_at = ?"
                " WHERE document_id = ? AND processing_version = ?",
                (DELETED, utc_now(), document_id, version),
            )
            self._audit(db, document_id, version, row.status if row else None, DELETED, None, None, reason)

    @staticmethod
    def _add_metrics(db: sqlite3.Connection, **increments: float) -> None:
        day = datetime.now(timezone.utc).date().isoformat()
        db.execute("INSERT OR IGNORE INTO metrics (day) VALUES (?)", (day,))
        assignments = ", ".join(f"{name} = {name} + ?" for name in increments)
        db.execute(f"UPDATE metrics SET {assignments} WHERE day = ?", (*increments.values(), day))

    def documents(self) -> list[DocumentStatus]:
        with self._read() as db:
            cursor = db.execute(
                "SELECT * FROM control c WHERE rowid = (SELECT rowid FROM control WHERE document_id ="
                " c.document_id ORDER BY updated_at DESC, rowid DESC LIMIT 1) ORDER BY document_id"
            )
            return [row for row in map(self._row, cursor.fetchall()) if row is not None]

    def completed_versions(self) -> dict[str, str]:
        with self._read() as db:
            cursor = db.execute(
                "SELECT document_id, processing_version FROM control WHERE status = ? ORDER BY updated_at, rowid",
                (COMPLETED,),
            )
            return {document_id: version for document_id, version in cursor.fetchall()}  # the latest wins

    def audit(self, document_id: str) -> list[dict[str, Any]]:
        with self._read() as db:
            cursor = db.execute("SELECT * FROM audit WHERE document_id = ? ORDER BY event_id", (document_id,))
            return [dict(row) for row in cursor.fetchall()]

    def metrics(self) -> list[dict[str, Any]]:
        with self._read() as db:
            return [dict(row) for row in db.execute("SELECT * FROM metrics ORDER BY day").fetchall()]
