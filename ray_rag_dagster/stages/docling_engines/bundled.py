"""What the rapid-* engines share: model files inside installed wheels, and the image form they take."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image


def bundled_file(package: str, *parts: str) -> Path:
    """Path of a model file shipped inside an installed wheel (never downloaded)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(f"{package} is not installed")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"bundled model file missing: {path}")
    return path


def to_bgr(image: Image.Image) -> np.ndarray:
    """PIL page image -> the BGR uint8 array the rapid-* models were trained on (cv2 order)."""
    rgb = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])
