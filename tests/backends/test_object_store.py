from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ray_rag_dagster.backends.object_store import LocalObjectStore, ObjectStore, S3ObjectStore


def test_put_get_list_delete(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    uri = store.put_bytes("input/a.pdf", b"%PDF-1.4 a")
    store.put_json("chunks/doc_1/x.json", {"n": 1})
    store.put_jsonl("chunks/doc_1/c.jsonl", [{"i": 1}, {"i": 2}])
    assert uri.startswith("file://") and uri.endswith("input/a.pdf")
    assert store.get_bytes("input/a.pdf") == b"%PDF-1.4 a"
    assert store.get_json("chunks/doc_1/x.json") == {"n": 1}
    assert store.get_jsonl("chunks/doc_1/c.jsonl") == [{"i": 1}, {"i": 2}]
    [info] = store.list("input/")
    assert (info.key, info.size, info.etag) == ("input/a.pdf", 10, hashlib.md5(b"%PDF-1.4 a").hexdigest())
    assert [i.key for i in store.list("chunks/")] == ["chunks/doc_1/c.jsonl", "chunks/doc_1/x.json"]
    assert store.delete_prefix("chunks/doc_1/") == 2
    assert store.list("chunks/") == []
    with pytest.raises(FileNotFoundError):
        store.get_bytes("chunks/doc_1/x.json")


def test_changed_content_changes_etag(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("input/a.pdf", b"one")
    first = store.list("input/")[0].etag
    store.put_bytes("input/a.pdf", b"two")
    assert store.list("input/")[0].etag != first


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    with pytest.raises(ValueError):
        store.put_bytes("../outside", b"x")


def test_no_partial_files_left_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("extracted/d/pages.json", b"old")

    def broken_replace(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        store.put_bytes("extracted/d/pages.json", b"new")
    monkeypatch.undo()
    assert store.get_bytes("extracted/d/pages.json") == b"old"
    assert [p.name for p in (tmp_path / "extracted/d").iterdir()] == ["pages.json"]


def _info_behaviour(store: ObjectStore) -> None:
    store.put_bytes("input/a.pdf", b"one")
    store.put_bytes("input/a.pdf.bak", b"other")  # a key that merely starts with the asked one is not it
    info = store.info("input/a.pdf")
    assert info is not None
    assert (info.key, info.size, info.etag) == ("input/a.pdf", 3, hashlib.md5(b"one").hexdigest())
    store.put_bytes("input/a.pdf", b"two!")
    assert store.info("input/a.pdf").etag == hashlib.md5(b"two!").hexdigest()  # type: ignore[union-attr]
    assert store.info("input/missing.pdf") is None
    assert store.info("input") is None  # a folder (local) or a bare prefix (S3) is no object
    assert store.exists("input/a.pdf") and not store.exists("input/missing.pdf")


def test_info_is_one_object_local(tmp_path: Path) -> None:
    _info_behaviour(LocalObjectStore(tmp_path))


def test_info_is_one_object_s3() -> None:
    from tests.standins.aws import moto_server

    with moto_server() as endpoint:
        store = S3ObjectStore("bucket-info-test", endpoint_url=endpoint)
        store.client.create_bucket(Bucket="bucket-info-test")
        _info_behaviour(store)
