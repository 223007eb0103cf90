"""A stage's writes outlive a delete or a newer version only if nobody looks after the write: the stage run
through ``run_while_current`` removes its version's outputs when the PDF left (or changed) while it ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_rag_dagster.backends import build_object_store
from ray_rag_dagster.errors import DocumentGone
from ray_rag_dagster.ids import document_id_for, version_of
from ray_rag_dagster.settings import Settings
from ray_rag_dagster.stages import keys
from ray_rag_dagster.stages.manifest import DocumentRef
from ray_rag_dagster.stages.source import run_while_current

SOURCE = "input/trial.pdf"


def stage_that_writes(settings: Settings, document: DocumentRef, change_inbox: bool) -> str:
    """Writes the version's chunks; the inbox changes under it (the removal run may already be done)."""
    store = build_object_store(settings)
    key = keys.chunks(document)
    store.put_bytes(key, b'{"text": "written"}\n')
    if change_inbox:
        store.put_bytes(SOURCE, b"%PDF-1.7 a newer version")
    return key


@pytest.fixture
def current(tmp_path: Path) -> tuple[Settings, DocumentRef]:
    settings = Settings(home=tmp_path)
    store = build_object_store(settings)
    store.put_bytes(SOURCE, b"%PDF-1.7 version one")
    info = store.info(SOURCE)
    assert info is not None
    return settings, DocumentRef(document_id=document_id_for(SOURCE), version=version_of(info.etag), source_key=SOURCE)


def test_a_stage_of_the_current_version_keeps_its_output(current: tuple[Settings, DocumentRef]) -> None:
    settings, document = current
    key = run_while_current(stage_that_writes, settings, document, False)
    assert build_object_store(settings).exists(key)


def test_a_stage_whose_pdf_changed_while_it_ran_removes_what_it_wrote(current: tuple[Settings, DocumentRef]) -> None:
    settings, document = current
    with pytest.raises(DocumentGone, match="replaced"):
        run_while_current(stage_that_writes, settings, document, True)
    store = build_object_store(settings)
    assert [info.key for prefix in keys.version_prefixes(document) for info in store.list(prefix)] == []


def test_a_stage_whose_pdf_was_deleted_removes_what_it_wrote(current: tuple[Settings, DocumentRef]) -> None:
    settings, document = current
    build_object_store(settings).delete_prefix(SOURCE)
    with pytest.raises(DocumentGone, match="deleted"):
        run_while_current(stage_that_writes, settings, document, False)
    assert not build_object_store(settings).exists(keys.chunks(document))
