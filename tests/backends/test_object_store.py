from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ray_rag_dagster.backends.object_store import LocalObjectStore


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
