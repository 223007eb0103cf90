"""Object storage by key: stage inputs and outputs live here, Dagster only sees their URIs.

Keys use the seed's prefixes: ``input/`` (the inbox), ``extracted/``, ``chunks/``, ``enriched/``,
``embeddings/``. Writes are atomic (a reader sees the old object or the new one, never half of one).
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import tempfile
from stat import S_ISREG
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # MD5 of the content, as S3 reports for single-part uploads


class ObjectStore(abc.ABC):
    """A flat key → bytes store."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` at ``key`` atomically; return the object's URI."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object and the ETag of exactly those bytes (one read: no race with a replacement)."""

    @abc.abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """The object at exactly ``key`` (size, ETag), or None: one lookup, however large its folder."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Objects under ``prefix``, sorted by key."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return how many."""

    @abc.abstractmethod
    def uri(self, key: str) -> str: ...

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def put_json(self, key: str, value: Any) -> str:
        return self.put_bytes(key, json.dumps(value, ensure_ascii=False).encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_jsonl(self, key: str, rows: list[dict[str, Any]]) -> str:
        body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return self.put_bytes(key, body.encode())

    def get_jsonl(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.get_bytes(key).decode().splitlines() if line]


class LocalObjectStore(ObjectStore):
    """Objects as files under one root folder; the key is the relative path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # (size, mtime_ns) → md5, so listing a large inbox every sensor tick does not re-hash it.
        self._etags: dict[Path, tuple[int, int, str]] = {}

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no object {self.uri(key)}")
        return path.read_bytes()

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        data = self.get_bytes(key)
        return data, hashlib.md5(data).hexdigest()

    def _etag(self, path: Path, stat: os.stat_result) -> str:
        cached = self._etags.get(path)
        if cached and cached[:2] == (stat.st_size, stat.st_mtime_ns):
            return cached[2]
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        self._etags[path] = (stat.st_size, stat.st_mtime_ns, digest)
        return digest

    def info(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        # One stat serves both: a folder (a bare prefix) is no object.
        return ObjectInfo(key=key, size=stat.st_size, etag=self._etag(path, stat)) if S_ISREG(stat.st_mode) else None

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return []
        infos = []
        for path in start.rglob("*"):
            if not path.is_file() or path.name.startswith(".tmp-"):
                continue
            key = path.relative_to(self.root).as_posix()
            if not key.startswith(prefix):
                continue
            try:
                stat = path.stat()
                infos.append(ObjectInfo(key=key, size=stat.st_size, etag=self._etag(path, stat)))
            except FileNotFoundError:  # deleted while listing
                continue
        return sorted(infos, key=lambda info: info.key)

    def delete_prefix(self, prefix: str) -> int:
        infos = self.list(prefix)
        for info in infos:
            self._path(info.key).unlink(missing_ok=True)
        return len(infos)

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()


def aws_client(service: str, region: str, endpoint_url: str | None):  # type: ignore[no-untyped-def]
    """A boto3 client with adaptive retries; ``endpoint_url`` points at moto's server or LocalStack."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 8, "mode": "adaptive"}),
    )


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket, keyed as locally. A PUT is atomic in S3 already."""

    def __init__(self, bucket: str, region: str = "us-east-1", endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.client = aws_client("s3", region, endpoint_url)

    def put_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no object {self.uri(key)}") from None

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no object {self.uri(key)}") from None
        return response["Body"].read(), response["ETag"].strip('"')

    def info(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(key=key, size=head["ContentLength"], etag=head["ETag"].strip('"'))

    def list(self, prefix: str) -> list[ObjectInfo]:
        # The paginator follows continuation tokens: S3 returns at most 1,000 keys a page.
        paginator = self.client.get_paginator("list_objects_v2")
        infos = [
            ObjectInfo(key=item["Key"], size=item["Size"], etag=item["ETag"].strip('"'))
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return sorted(infos, key=lambda info: info.key)

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = keys[start : start + 1000]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
            # A multi-object delete answers 200 even when keys fail (AccessDenied): surface them.
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise PermissionError(
                    f"could not delete {len(errors)} of {len(batch)} objects under {self.uri(prefix)}: "
                    f"{first.get('Code')} on {first.get('Key')}: {first.get('Message')}"
                )
        return len(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"
