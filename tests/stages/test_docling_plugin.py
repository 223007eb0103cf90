"""docling's model factories find the offline engines through the plugin entry point in pyproject.toml."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from docling.datamodel.pipeline_options import TableStructureOptions
from docling.models.factories import get_layout_factory, get_ocr_factory, get_table_structure_factory
from docling.models.factories.base_factory import BaseFactory

from ray_rag_dagster.stages.docling_engines import plugin
from ray_rag_dagster.stages.docling_engines.layout import CdlaLayoutOptions
from ray_rag_dagster.stages.docling_engines.ocr import BundledRapidOcrOptions
from ray_rag_dagster.stages.docling_engines.table import SlanetTableOptions

ENGINES = [
    pytest.param(get_layout_factory, CdlaLayoutOptions.kind, id="layout"),
    pytest.param(get_table_structure_factory, SlanetTableOptions.kind, id="table"),
    pytest.param(get_ocr_factory, BundledRapidOcrOptions.kind, id="ocr"),
]


@pytest.mark.parametrize(("get_factory", "kind"), ENGINES)
def test_docling_registers_the_engine_from_the_entry_point(get_factory: Callable[..., BaseFactory], kind: str) -> None:
    factory = get_factory(allow_external_plugins=True)
    assert kind in factory.registered_kind
    meta = next(meta for meta in factory.registered_meta.values() if meta.kind == kind)
    assert (meta.plugin_name, meta.module) == (plugin.PLUGIN_NAME, plugin.__name__)


@pytest.mark.parametrize(("get_factory", "kind"), ENGINES)
def test_docling_keeps_external_engines_out_unless_allowed(get_factory: Callable[..., BaseFactory], kind: str) -> None:
    assert kind not in get_factory(allow_external_plugins=False).registered_kind


def test_docling_table_engines_that_import_stay_registered() -> None:
    """TableFormer V2 cannot import here (no torchvision); docling's TableFormer must not go with it."""
    assert TableStructureOptions.kind in get_table_structure_factory(allow_external_plugins=True).registered_kind

