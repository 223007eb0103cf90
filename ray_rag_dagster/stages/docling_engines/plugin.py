"""The docling plugin that hands docling the offline engines: its entry point is in pyproject.toml.

docling's model factories (``docling.models.factories``) load every module of the ``docling``
entry-point group and call the hook named after each factory: ``layout_engines``,
``table_structure_engines`` and ``ocr_engines`` here (docling 2.143 also has
``picture_description``, which this plugin leaves to docling). A pipeline sees plugins from
outside docling only with ``allow_external_plugins=True``, and selects an engine by the type of
its options (``layout_options``, ``table_structure_options``, ``ocr_options``).
"""

from __future__ import annotations

import importlib
import logging

from docling.models.plugins import defaults

_log = logging.getLogger(__name__)

PLUGIN_NAME = "ray_rag_dagster"  # the entry point's name


def layout_engines() -> dict[str, list[type]]:
    from ray_rag_dagster.stages.docling_engines.layout import CdlaLayoutModel

    return {"layout_engines": [CdlaLayoutModel]}


def table_structure_engines() -> dict[str, list[type]]:
    from ray_rag_dagster.stages.docling_engines.table import SlanetTableModel

    return {"table_structure_engines": [SlanetTableModel]}


def ocr_engines() -> dict[str, list[type]]:
    from ray_rag_dagster.stages.docling_engines.ocr import BundledRapidOcrModel

    return {"ocr_engines": [BundledRapidOcrModel]}


def require_engines_in_docling() -> None:
    """Fail early, saying how to fix it, when docling's factories lack these engines.

    They are missing when the installed package metadata predates the entry point: docling would
    then fail mid-build with "No class found with the name ...".
    """
    from docling.models.factories import get_layout_factory, get_ocr_factory, get_table_structure_factory

    missing: list[str] = []
    for get_factory, hook in (
        (get_layout_factory, layout_engines),
        (get_table_structure_factory, table_structure_engines),
        (get_ocr_factory, ocr_engines),
    ):
        registered = get_factory(allow_external_plugins=True).classes
        missing += [engine.get_options_type().kind for engine in hook()[hook.__name__]
                    if engine.get_options_type() not in registered]
    if missing:
        raise RuntimeError(
            f"docling does not see the {PLUGIN_NAME} engines {missing}: the installed ray-rag-dagster has no "
            "'docling' entry point; reinstall it (pip install -e . or make)"
        )


# docling's own table hook imports TableFormer V2, which imports torchvision at module level;
# torchvision is deliberately absent (it breaks import beside this torch), and the stock hook's
# ImportError would take the whole table factory down. docling imports every plugin module
# before it calls any hook, so swapping the hook here, on import, is in time.
_DOCLING_TABLE_ENGINES = (
    ("docling.models.stages.table_structure.table_structure_model", "TableStructureModel"),
    ("docling.models.stages.table_structure.table_structure_model_v2", "TableStructureModelV2"),
    (
        "docling.models.stages.table_structure.table_structure_model_granite_vision",
        "GraniteVisionTableStructureModel",
    ),
)


def _importable_docling_table_engines() -> dict[str, list[type]]:
    """docling's default table hook, skipping the engines that cannot import."""
    engines: list[type] = []
    for module, name in _DOCLING_TABLE_ENGINES:
        try:
            engines.append(getattr(importlib.import_module(module), name))
        except ImportError as exc:
            _log.info("docling table engine %s unavailable: %s", name, exc)
    return {"table_structure_engines": engines}


try:
    defaults.table_structure_engines()
except ImportError:
    defaults.table_structure_engines = _importable_docling_table_engines  # type: ignore[assignment]
