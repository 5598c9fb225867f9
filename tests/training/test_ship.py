"""`hemaview-train ship` end to end at a tiny size: every stage, the card, and a rerun that
resumes instead of redoing what is finished."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import IDRID

from inference.model_file import ModelFile
from training.ship import ShipConfig, ship

pytestmark = pytest.mark.slow


def _cpuinfo_field(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def _cpu_model() -> str:
    return _cpuinfo_field("model name")


def _cpu_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


def test_ship_makes_both_files_and_a_card_and_a_rerun_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    config = ShipConfig(
        out=str(tmp_path / "run"),
        model_out=str(models / "hemorrhage.onnx"),
        data_dir=str(IDRID),
        cache_dir=str(tmp_path / "cache"),
        choose="random-seg",
        photos=4,
        folds=2,
        epochs=2,
        steps_per_epoch=1,
        batch_size=2,
        working_size=256,
        crop_size=64,
        camera_versions=1,
        int8_calibration_photos=2,
        int8_eval_photos=2,
        device="cpu",
        threads=1,
    )
    model_path = ship(config)
    assert model_path == models / "hemorrhage.onnx"
    fp32 = ModelFile.open(model_path)
    int8 = ModelFile.open(models / "hemorrhage-int8.onnx")
    assert int8.contract.training_config["quantisation"]["source_sha256"] == fp32.sha256
    assert "int8_check" in int8.contract.metrics
    card = (models / "MODEL_CARD.md").read_text()
    assert fp32.sha256 in card and "other cameras" in card and "## INT8" in card
    assert "quantize" in card  # the time of every stage
    # Timings mean little without the machine: the card names the CPU and its bfloat16 units.
    flags = _cpu_flags()
    units = [n for n, f in (("AMX", "amx_tile"), ("AVX512-BF16", "avx512_bf16")) if f in flags]
    assert f"CPU ({_cpu_model()}, {', '.join(units) or 'no bfloat16 units'}, 1 thread)" in card
    cv = fp32.contract.metrics["cross_validation"]
    assert 0.0 <= cv["pooled_aupr"] <= 1.0 and cv["other_camera"]["pooled_aupr"] >= 0.0
    state = json.loads((tmp_path / "run" / "ship_state.json").read_text())
    assert set(state) == {"compare", "fit", "export", "quantize"}

    capsys.readouterr()

    # a rerun finds every stage done: nothing is trained, exported or quantised again
    checkpoint = tmp_path / "run" / "final" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns, (models / "hemorrhage-int8.onnx").read_bytes()
    ship(config)
    printed = capsys.readouterr().out
    assert "already this model; kept" in printed and "already this model's INT8" in printed
    assert checkpoint.stat().st_mtime_ns == before[0]
    assert (models / "hemorrhage-int8.onnx").read_bytes() == before[1]
    assert "three mirror images" in card  # mirror averaging is on by default

    # without mirror averaging: the folds predict again from their checkpoints, nothing
    # trains again, and the file, its calibration and its INT8 sibling are made again
    folds = sorted((tmp_path / "run" / "compare" / "random-seg").glob("fold*/checkpoint.pt"))
    fold_times = [p.stat().st_mtime_ns for p in folds]
    fp32_before = model_path.read_bytes()
    ship(dataclasses.replace(config, mirror_average=False))
    printed = capsys.readouterr().out
    assert "predicting again from the folds' checkpoints" in printed
    assert [p.stat().st_mtime_ns for p in folds] == fold_times
    assert checkpoint.stat().st_mtime_ns == before[0]
    assert model_path.read_bytes() != fp32_before
    assert (models / "hemorrhage-int8.onnx").read_bytes() != before[1]
    single = ModelFile.open(model_path).contract
    assert single.training_config["ship"]["mirror_average"] is False
    assert "one pass of the network" in (models / "MODEL_CARD.md").read_text()
