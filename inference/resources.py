"""Where the files that ship with Hemaview live: the model, sample photos, translations."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHIPPED_MODEL = Path("models") / "hemorrhage.onnx"


def resource_root() -> Path:
    """The `resources/` folder: beside the packages in a checkout, inside a frozen build."""
    override = os.environ.get("HEMAVIEW_RESOURCES")
    if override:
        return Path(override)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def shipped_model_path() -> Path:
    return resource_root() / SHIPPED_MODEL


def sample_photos_dir() -> Path:
    return resource_root() / "samples"


def app_icon_path() -> Path:
    """The application icon (PNG; the Windows installer uses the .ico beside it)."""
    return resource_root() / "icons" / "hemaview.png"
