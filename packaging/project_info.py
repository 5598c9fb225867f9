"""What the installer builds need to know about the project, read from pyproject.toml.

Used by the PyInstaller spec, `packaging/build` and the Windows installer template, so the
name and version are written in one place only. Run as a script:

    python packaging/project_info.py name|version|description|folder FLAVOUR|requirements FLAVOUR
"""

from __future__ import annotations

import platform
import re
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FLAVOURS = ("cpu", "gpu")

# Never in a clinic build: training only, and torch alone is gigabytes.
FORBIDDEN_MODULES = (
    "torch",
    "torchvision",
    "segmentation_models_pytorch",
    "timm",
    "training",
    "onnxscript",
    "matplotlib",
    "pytest",
)


def leaked_modules(names: list[str]) -> list[str]:
    """The entries of a build (module names or file paths) that are forbidden modules."""
    leaked = set()
    for entry in names:
        parts = re.split(r"[./\\]", entry)
        if parts and parts[0] in FORBIDDEN_MODULES:
            leaked.add(entry)
    return sorted(leaked)


# The CUDA 13 / cuDNN 9 libraries onnxruntime-gpu loads, from NVIDIA's PyPI wheels (the
# onnxruntime-gpu extras `cuda` and `cudnn` name the same wheels).
GPU_RUNTIME_EXTRAS = "[cuda,cudnn]"


def pyproject() -> dict:
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def name() -> str:
    return str(pyproject()["project"]["name"])


def version() -> str:
    return str(pyproject()["project"]["version"])


def description() -> str:
    return str(pyproject()["project"].get("description", ""))


def platform_tag() -> str:
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(
        sys.platform, sys.platform
    )
    machine = platform.machine().lower().replace("amd64", "x86_64")
    return f"{system}-{machine}"


def folder_name(flavour: str) -> str:
    """The one-folder build's name, e.g. hemaview-0.1.0-linux-x86_64-cpu."""
    _check_flavour(flavour)
    return f"{name()}-{version()}-{platform_tag()}-{flavour}"


def requirements(flavour: str) -> list[str]:
    """The base install's requirements with the ONNX Runtime package the flavour wants.

    The CPU flavour takes `onnxruntime` (no 280 MB CUDA provider); the GPU flavour takes
    `onnxruntime-gpu` with NVIDIA's CUDA and cuDNN runtime wheels. Never both: they share the
    module `onnxruntime`.
    """
    _check_flavour(flavour)
    out = []
    ort_spec = ""
    for req in pyproject()["project"]["dependencies"]:
        bare = req.split(";")[0].strip()
        match = re.match(r"(onnxruntime(?:-gpu)?)\s*(.*)", bare)
        if match:
            ort_spec = ort_spec or match.group(2)
            continue
        out.append(bare)
    if flavour == "cpu":
        out.append(f"onnxruntime{ort_spec}")
    else:
        out.append(f"onnxruntime-gpu{GPU_RUNTIME_EXTRAS}{ort_spec}")
    return out


def _check_flavour(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise SystemExit(f"flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    what, rest = argv[0], argv[1:]
    if what == "name":
        print(name())
    elif what == "version":
        print(version())
    elif what == "description":
        print(description())
    elif what == "folder" and len(rest) == 1:
        print(folder_name(rest[0]))
    elif what == "requirements" and len(rest) == 1:
        print("\n".join(requirements(rest[0])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
