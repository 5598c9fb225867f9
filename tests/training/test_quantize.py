"""INT8 quantisation of an exported model, calibrated on real IDRiD photos: the result keeps
the model contract, opens through inference.Segmenter and predicts like the fp32 model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import IDRID, idrid_photo

from inference import Segmenter
from inference.contract import PreprocessRecipe, file_sha256
from inference.errors import ModelContractError
from inference.model_file import ModelFile
from training.cli import main as train_main
from training.export import export_model
from training.model import HemaviewNet, ModelConfig
from training.quantize import INT8_SUFFIX, QuantizeOptions, quantize_model

SIZE = 256  # a small working size keeps calibration and inference quick on 2 cores
CALIBRATION = [idrid_photo(2), idrid_photo(3)]


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("quant") / "fp32.onnx"
    export_model(
        HemaviewNet(ModelConfig()).eval(),
        out,
        PreprocessRecipe(working_size=SIZE),
        check_parity=False,  # tests/training/test_finetune.py checks the export's parity
    )
    return out


@pytest.fixture(scope="module")
def int8_path(fp32_path: Path) -> Path:
    out = fp32_path.with_name("int8.onnx")
    quantize_model(fp32_path, out, CALIBRATION, QuantizeOptions())
    return out


def test_int8_model_keeps_the_contract(fp32_path: Path, int8_path: Path) -> None:
    fp32, int8 = ModelFile.open(fp32_path), ModelFile.open(int8_path)
    c32, c8 = fp32.contract, int8.contract
    # ModelFile.open verified the recorded digest; check it is the file's own, not the source's
    assert file_sha256(int8.data, c8.sha256) == c8.sha256 != c32.sha256
    assert c8.model_name == c32.model_name + INT8_SUFFIX
    assert c8.model_version == c32.model_version + INT8_SUFFIX
    for same in ("preprocess", "input_name", "output_name", "default_threshold", "attribution"):
        assert getattr(c8, same) == getattr(c32, same), same
    assert c8.metrics == c32.metrics
    quant = c8.training_config["quantisation"]
    assert quant["calibration_photos"] == [p.name for p in CALIBRATION]
    assert quant["source_sha256"] == c32.sha256
    # really int8: quantised convolution weights, a quarter of the file
    graph = onnx.load_from_string(int8.data).graph
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    assert len(int8.data) < 0.35 * len(fp32.data)


def test_output_probability_is_not_quantised(int8_path: Path) -> None:
    """The head convolution and the sigmoid stay float: int8 probabilities would tie most
    pixels of a photo and flatten the precision-recall curve."""
    graph = onnx.load(str(int8_path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    sigmoid = producer[graph.output[0].name]
    assert sigmoid.op_type == "Sigmoid"
    head = producer[sigmoid.input[0]]
    assert head.op_type == "Conv"  # a float convolution, not a DequantizeLinear
    weights = {t.name: t for t in graph.initializer}
    assert weights[head.input[1]].data_type == onnx.TensorProto.FLOAT


def test_int8_predicts_a_real_photo_like_fp32(fp32_path: Path, int8_path: Path) -> None:
    photo = idrid_photo(1)  # not a calibration photo
    fp32_seg, int8_seg = Segmenter.open(fp32_path, backend="cpu"), Segmenter.open(int8_path)
    try:
        ref, got = fp32_seg.predict(photo), int8_seg.predict(photo)
    finally:
        fp32_seg.close()
        int8_seg.close()
    assert got.provenance.model_name.endswith(INT8_SUFFIX)
    assert got.probability.shape == ref.probability.shape == (2848, 4288)
    assert float(got.probability.min()) >= 0.0 and float(got.probability.max()) <= 1.0
    inside = got.geometry.fov_mask_working()
    a = ref.working.astype(np.float64)[inside]
    b = got.working.astype(np.float64)[inside]
    # Random weights give a flat map (probabilities ~0.004-0.017), the hardest case for
    # 8-bit activations, and any absolute tolerance would be vacuous: the int8 map must
    # follow the fp32 one (measured: correlation 0.98, worst pixel 14% of the map's range).
    assert np.corrcoef(a, b)[0, 1] > 0.9
    assert float(np.abs(a - b).max()) < 0.3 * float(np.ptp(a))


def test_a_model_without_contract_is_refused(fp32_path: Path, tmp_path: Path) -> None:
    bare = onnx.load(str(fp32_path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelContractError, match="not a Hemaview model"):
        quantize_model(tmp_path / "bare.onnx", tmp_path / "out.onnx", CALIBRATION)
    assert not (tmp_path / "out.onnx").exists()


def test_a_quantised_model_is_not_quantised_again(int8_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(int8_path, tmp_path / "twice.onnx", CALIBRATION)


def test_cli_reports_both_models_and_a_decision(
    fp32_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-int8.onnx"
    code = train_main(
        [
            "quantize",
            str(fp32_path),
            str(out),
            "--calibration-photos",
            "1",
            "--eval-photos",
            "1",
            "--data-dir",
            str(IDRID / "images"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "pooled AUPR" in printed and "fp32" in printed and "int8" in printed
    assert "speed-up" in printed and "decision" in printed
    check = ModelFile.open(out).contract.metrics["int8_check"]  # the evidence, in the file
    assert check["n_photos_evaluated"] == 1 and isinstance(check["ship"], bool)
    assert 0.0 <= check["int8_aupr"] <= 1.0 and check["speedup"] > 0


# ----------------------------------------------------------------------------------------------
# Which file runs: INT8 on a CPU when it was made from the shipped fp32 model


@pytest.fixture
def shipped_pair(
    fp32_path: Path, int8_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A resources folder holding an fp32 model and its INT8 file, as the app ships them."""
    models = tmp_path / "resources" / "models"
    models.mkdir(parents=True)
    shutil.copy(fp32_path, models / "hemorrhage.onnx")
    shutil.copy(int8_path, models / "hemorrhage-int8.onnx")
    monkeypatch.setenv("HEMAVIEW_RESOURCES", str(tmp_path / "resources"))
    return models


def test_the_cpu_runs_the_int8_file_and_the_gpu_the_fp32_one(shipped_pair: Path) -> None:
    from inference.model_choice import choose_model

    fp32 = ModelFile.open(shipped_pair / "hemorrhage.onnx")
    on_cpu = choose_model(fp32, on_cpu=True)
    assert on_cpu.model.path.name == "hemorrhage-int8.onnx" and on_cpu.source is fp32
    assert "INT8" in on_cpu.reason
    on_gpu = choose_model(fp32, on_cpu=False)
    assert on_gpu.model is fp32 and "fp32" in on_gpu.reason


def test_the_shipped_model_on_the_cpu_records_the_int8_file_in_provenance(
    shipped_pair: Path,
) -> None:
    segmenter = Segmenter.open(backend="cpu")
    try:
        assert segmenter.model.path.name == "hemorrhage-int8.onnx"
        assert segmenter.source_model.path.name == "hemorrhage.onnx"  # what Triton must serve
        prediction = segmenter.predict(idrid_photo(1))
    finally:
        segmenter.close()
    assert prediction.provenance.model_file == "hemorrhage-int8.onnx"
    assert prediction.provenance.model_sha256 == segmenter.model.sha256
    # a path given outright is opened as given, whatever the device
    exact = Segmenter.open(shipped_pair / "hemorrhage.onnx", backend="cpu")
    try:
        assert exact.model.path.name == "hemorrhage.onnx"
    finally:
        exact.close()


def test_an_int8_file_of_another_model_or_one_that_failed_its_check_is_not_used(
    shipped_pair: Path, tmp_path: Path
) -> None:
    from inference.model_choice import choose_model
    from training.quantize import record_evaluation

    # another fp32 model beside the same INT8 file: the INT8 file is not its quantisation
    torch.manual_seed(1)
    other = shipped_pair / "hemorrhage.onnx"
    export_model(
        HemaviewNet(ModelConfig()).eval(),
        other,
        PreprocessRecipe(working_size=SIZE),
        check_parity=False,
    )
    choice = choose_model(ModelFile.open(other), on_cpu=True)
    assert choice.model.path.name == "hemorrhage.onnx" and "another model" in choice.reason

    # its own INT8 file, whose recorded check said do not ship
    failed = shipped_pair / "hemorrhage-int8.onnx"
    failed.unlink()
    quantize_model(other, failed, CALIBRATION, QuantizeOptions())
    record_evaluation(failed, {"ship": False, "aupr_drop": 0.05, "speedup": 1.8})
    choice = choose_model(ModelFile.open(other), on_cpu=True)
    assert choice.model.path.name == "hemorrhage.onnx" and "quality check" in choice.reason
    failed.unlink()
    assert "no INT8 file" in choose_model(ModelFile.open(other), on_cpu=True).reason


@pytest.mark.parametrize(
    ("drop", "speedup", "ship"),
    [
        (0.0, 2.0, True),
        (0.01, 1.2, True),  # both at the bar
        (0.0101, 2.0, False),  # a hair too much AUPR lost
        (-0.02, 1.19, False),  # better, but not faster enough
        (0.005, 1.6, True),  # the figures measured on the shipped model
        (None, 3.0, False),  # no photo with a mask: never on speed alone
        (float("nan"), 3.0, False),
    ],
)
def test_the_int8_ship_rule(drop: float | None, speedup: float, ship: bool) -> None:
    from training.quantize import ship_int8

    assert ship_int8(drop, speedup) is ship
