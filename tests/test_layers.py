"""The layer rules of DESIGN.md, checked by tools rather than by reading."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_inference_loads_neither_torch_nor_qt_and_is_ours() -> None:
    code = (
        "import json, sys, inference; from inference import Segmenter, read_photo;"
        "import inference.cli, inference.labels, inference.backends.onnx_local;"
        "print(json.dumps({'file': inference.__file__,"
        " 'heavy': sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('torch', 'PySide6', 'shiboken6', 'torchvision', 'segmentation_models_pytorch',"
        "  'viewer', 'training'))}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    # PyPI has an unrelated distribution named `inference`: make sure this one is ours.
    assert Path(report["file"]).resolve() == (REPO / "inference" / "__init__.py").resolve()


def test_only_one_onnxruntime_distribution_installed() -> None:
    names = {d.metadata["Name"].lower() for d in metadata.distributions()}
    assert not {"onnxruntime", "onnxruntime-gpu"} <= names, (
        "both onnxruntime and onnxruntime-gpu are installed"
    )
    assert names & {"onnxruntime", "onnxruntime-gpu"}


def test_the_viewer_contract_names_every_private_module_of_inference() -> None:
    """A new module in inference is private to it until someone decides otherwise: the
    viewer's contract must list it, or the viewer could reach into it unseen."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    surface = next(c for c in contracts if c["name"].startswith("the viewer uses inference's"))
    public = {"inference.labels", "inference.anatomy"}
    modules = {
        "inference." + (p.stem if p.is_file() else p.name)
        for p in (REPO / "inference").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert set(surface["forbidden_modules"]) == modules - public
