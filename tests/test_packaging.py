"""The clinic installer: a real PyInstaller build of the CPU flavour, run as a clinic would.

The frozen build comes from `packaging/freeze cpu` (its own environment with the CPU-only
onnxruntime and no torch), or from HEMAVIEW_FROZEN_BUILD when `packaging/build` has just made
one. It takes a few minutes on the 2-core CI machine, once per session.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import REPO

PACKAGING = REPO / "packaging"
pytestmark = pytest.mark.slow


def _load(name: str) -> ModuleType:
    """packaging/ is not a Python package (its name is taken on PyPI): load by path."""
    if str(PACKAGING) not in sys.path:
        sys.path.insert(0, str(PACKAGING))
    spec = importlib.util.spec_from_file_location(name, PACKAGING / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


info = _load("project_info")
installer = _load("render_installer")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user who has never run Hemaview, on a machine with no display."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEMAVIEW_", "PYTHON"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        QT_QPA_PLATFORM="offscreen",
    )
    return env


@pytest.fixture(scope="session")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("HEMAVIEW_FROZEN_BUILD")
    if given:
        return Path(given)
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [str(PACKAGING / "freeze"), "cpu", str(dist)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"freezing failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


# --- names, versions and flavours come from pyproject.toml --------------------------------


def test_name_version_and_folder_come_from_pyproject() -> None:
    assert info.name() == PYPROJECT["name"]
    assert info.version() == PYPROJECT["version"]
    folder = info.folder_name("cpu")
    assert folder.startswith(f"{PYPROJECT['name']}-{PYPROJECT['version']}-")
    assert folder.endswith("-cpu")
    with pytest.raises(SystemExit, match="flavour"):
        info.folder_name("cuda")


def test_each_flavour_installs_exactly_one_onnx_runtime() -> None:
    cpu = info.requirements("cpu")
    gpu = info.requirements("gpu")
    assert [r for r in cpu if r.startswith("onnxruntime")] == ["onnxruntime>=1.20"]
    assert [r for r in gpu if r.startswith("onnxruntime")] == ["onnxruntime-gpu[cuda,cudnn]>=1.20"]
    # everything else is the clinic install of pyproject.toml, and no training package
    others = sorted(r for r in cpu if not r.startswith("onnxruntime"))
    assert others == sorted(r for r in gpu if not r.startswith("onnxruntime"))
    assert len(others) == len(PYPROJECT["dependencies"]) - 2
    assert not [r for r in cpu + gpu if r.split("[")[0].split(">")[0] in ("torch", "timm")]


def test_forbidden_modules_are_recognised_in_module_names_and_paths() -> None:
    entries = [
        "torch",
        "torch.nn.functional",
        "torch/lib/libtorch_cpu.so",
        "torch.libs/libgomp.so",
        "training.finetune",
        "training/cli.py",
        "segmentation_models_pytorch.base",
        "viewer.qt.canvas",
        "inference.training_free",
        "torchaudio_not_ours",
    ]
    assert info.leaked_modules(entries) == sorted(entries[:7])


# --- the Windows installer script ---------------------------------------------------------


def test_windows_script_is_filled_from_pyproject_for_each_flavour() -> None:
    cpu = installer.render("cpu", r"C:\build\hemaview-cpu")
    gpu = installer.render("gpu", r"C:\build\hemaview-gpu")
    for script in (cpu, gpu):
        assert "@" not in "".join(line for line in script.splitlines() if not line.startswith(";"))
        assert f'#define AppVersion "{PYPROJECT["version"]}"' in script
        assert "[Icons]" in script and "{group}\\{#AppName}" in script  # Start menu
        assert "{autodesktop}" in script  # the optional desktop shortcut
        assert "{uninstallexe}" in script and "[UninstallDelete]" in script
        assert "--selftest" in script
    # the two flavours are different programs to Windows, and each keeps its id across versions
    app_id = [line for line in cpu.splitlines() if line.startswith("AppId=")]
    assert app_id == ["AppId=" + installer.APP_IDS["cpu"]]
    assert installer.APP_IDS["cpu"] != installer.APP_IDS["gpu"]
    assert "OutputBaseFilename=hemaview-" in cpu and "-cpu-setup" in cpu
    with pytest.raises(ValueError, match="unfilled"):
        installer.render("cpu", "X", template="AppName=@NO_SUCH_THING@")


def test_windows_script_names_the_files_its_shortcuts_use() -> None:
    names = installer.named_files(installer.render("cpu", r"C:\b"))
    for expected in (
        "hemaview.exe",
        "hemaview-infer.exe",
        "_internal/*",
        "_internal/resources/icons/hemaview.ico",
        "_internal/resources/samples/CC-BY-4.0.txt",
    ):
        assert expected in names


def test_windows_script_reports_what_a_build_lacks(tmp_path: Path) -> None:
    script = installer.render("cpu", r"C:\b")
    (tmp_path / "hemaview").write_text("")
    missing = installer.missing_files(script, tmp_path)
    assert "hemaview-infer.exe" in missing and "_internal/*" in missing
    assert "hemaview.exe" not in missing


# --- the frozen CPU build -------------------------------------------------------------------


def test_frozen_build_every_file_the_windows_script_names_exists(frozen: Path) -> None:
    script = installer.render("cpu", r"dist\build")
    assert installer.missing_files(script, frozen) == []


def test_frozen_build_carries_the_model_samples_translations_and_icon_fonts(frozen: Path) -> None:
    internal = frozen / "_internal"
    shipped_models = sorted((REPO / "resources" / "models").glob("hemorrhage*.onnx"))
    assert "hemorrhage.onnx" in [p.name for p in shipped_models]
    for shipped in shipped_models:
        model = internal / "resources" / "models" / shipped.name
        assert (
            hashlib.sha256(model.read_bytes()).digest()
            == hashlib.sha256(shipped.read_bytes()).digest()
        ), shipped.name
    assert sorted(p.name for p in (internal / "resources" / "samples").glob("*.jpg")) == sorted(
        p.name for p in (REPO / "resources" / "samples").glob("*.jpg")
    )
    assert (internal / "resources" / "samples" / "CC-BY-4.0.txt").is_file()  # IDRiD credit
    assert (internal / "resources" / "models" / "MODEL_CARD.md").is_file()
    assert (internal / "viewer" / "i18n" / "hemaview_ko.qm").is_file()
    assert list((internal / "qtawesome" / "fonts").glob("fontawesome*.ttf"))
    # the app reads its version from the installed metadata
    metadata = [
        *internal.glob("hemaview-*.dist-info/METADATA"),
        *internal.glob("hemaview.egg-info/PKG-INFO"),
    ]
    assert metadata and f"Version: {PYPROJECT['version']}\n" in metadata[0].read_text()


def test_frozen_cpu_build_has_no_torch_training_or_cuda_provider(frozen: Path) -> None:
    internal = frozen / "_internal"
    top = sorted(p.name for p in internal.iterdir())
    assert info.leaked_modules(top) == []
    assert not list(internal.rglob("*providers_cuda*"))
    assert not list(internal.rglob("libcudnn*")) and not list(internal.rglob("libtorch*"))
    # and no training code hidden inside the byte-code archive either
    archive = (frozen / "hemaview").read_bytes()
    assert b"training.finetune" not in archive and b"segmentation_models_pytorch" not in archive
    size_mb = sum(p.stat().st_size for p in frozen.rglob("*") if p.is_file()) / 2**20
    print(f"\nCPU flavour unpacked: {size_mb:.0f} MB")


def test_frozen_selftest_reports_versions_model_check_and_provider(
    frozen: Path, tmp_path: Path
) -> None:
    from inference.model_choice import choose_model
    from inference.model_file import ModelFile

    done = subprocess.run(
        [str(frozen / "hemaview"), "--selftest"],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert f"Hemaview {PYPROJECT['version']}," in out
    # the CPU flavour runs the shipped model's INT8 file where one passed its check
    fp32 = ModelFile.open(REPO / "resources" / "models" / "hemorrhage.onnx")
    runs = choose_model(fp32, on_cpu=True).model
    assert f"model file that runs: {runs.path.name}" in out
    assert f"model SHA-256 verified: {runs.contract.sha256}" in out
    # the CPU flavour says why the GPU is not used, in plain words
    assert "the GPU is not used: this onnxruntime build has no CUDA support" in out
    assert "suggested lesions" in out and out.rstrip().endswith("selftest passed")
    # and it left no telemetry id behind (onnxruntime's, which we switch off)
    assert not list(tmp_path.rglob("Microsoft")), "onnxruntime telemetry was not switched off"


def test_frozen_selftest_fails_on_a_damaged_model(frozen: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "hemorrhage.onnx"
    data = bytearray((REPO / "resources" / "models" / "hemorrhage.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    done = subprocess.run(
        [str(frozen / "hemaview"), "--selftest", "--model", str(damaged)],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    assert done.returncode != 0
    assert "[FAIL] model" in done.stdout


def test_frozen_app_shows_a_sample_photo_with_its_overlay(frozen: Path, tmp_path: Path) -> None:
    import cv2

    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [str(frozen / "hemaview"), "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[1] >= 1000
    # the fundus is there (orange-red) and so is the overlay's cyan
    b, g, r = (image[..., i].astype(int) for i in range(3))
    assert ((r > 150) & (g < 140) & (b < 100)).mean() > 0.05
    assert ((b > 150) & (g > 150) & (r < 120)).sum() > 200
    # Korean from the frozen translations, as a Korean clinic would see it
    env = clean_env(tmp_path / "ko")
    ko = subprocess.run(
        [str(frozen / "hemaview"), "--lang", "ko", "--screenshot", str(tmp_path / "ko.png")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ko.returncode == 0, ko.stdout + ko.stderr
    assert not np.array_equal(cv2.imread(str(tmp_path / "ko.png"))[:40], image[:40])


def test_frozen_batch_inference_writes_labels(frozen: Path, tmp_path: Path) -> None:
    photo = sorted((REPO / "resources" / "samples").glob("*.jpg"))[0]
    out = tmp_path / "out"
    done = subprocess.run(
        # a Triton server that is not there: the frozen Triton client must load, say so,
        # and the photo is annotated here instead
        [
            str(frozen / "hemaview-infer"),
            str(photo),
            "--out",
            str(out),
            "--remote",
            "127.0.0.1:9",
            "--budget",
            "0",
        ],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / f"{photo.stem}_HE.png").is_file() and (out / f"{photo.stem}.json").is_file()
    assert "cannot be reached" in done.stdout + done.stderr
    assert "1 here, 0 on the server" in done.stdout + done.stderr


def test_deb_package_installs_the_app_commands_and_desktop_entry(
    frozen: Path, tmp_path: Path
) -> None:
    made = subprocess.run(
        [str(PACKAGING / "make-deb"), str(frozen), "cpu", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    deb = Path(made.stdout.strip().splitlines()[-1])
    assert deb.name == f"hemaview_{PYPROJECT['version']}_amd64.deb"
    checked = subprocess.run(
        [str(PACKAGING / "check-deb"), str(deb)], capture_output=True, text=True, timeout=600
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    fields = subprocess.run(
        ["dpkg-deb", "--field", str(deb), "Package", "Conflicts", "Depends"],
        capture_output=True,
        text=True,
    ).stdout
    assert "Package: hemaview\n" in fields and "Conflicts: hemaview-gpu" in fields
    assert "libxcb-cursor0" in fields  # Qt's xcb platform needs it and it is not in the build


def test_the_package_metadata_builds_without_deprecation_warnings(tmp_path: Path) -> None:
    """Every install ran setuptools' warning about the old `project.license` table; the
    SPDX form builds quietly and names both licences."""
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            "-c",
            "import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Deprecat" not in done.stderr, done.stderr[-3000:]
    metadata = (tmp_path / done.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: LicenseRef-Proprietary AND CC-BY-4.0" in metadata
