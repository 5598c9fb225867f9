"""A model must describe itself; anything else is refused with a message naming the problem."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import onnx
import pytest
from onnx import helper, numpy_helper

from inference import ModelContractError, Segmenter
from inference.contract import (
    KEY_PREPROCESS,
    KEY_SCHEMA_VERSION,
    KEY_SHA256,
    ModelContract,
    stamp_sha256,
)
from inference.fov import CONSTANTS, DETECTOR, FovParams
from inference.model_file import ModelFile


def _rewrite(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    model = onnx.load(str(src))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_meta(model: onnx.ModelProto, values: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def test_the_model_opens_and_verifies_its_own_sha256(model_path: Path) -> None:
    model = ModelFile.open(model_path)
    assert len(model.sha256) == 64
    assert model.contract.preprocess.working_size >= 256
    assert "IDRiD" in model.contract.attribution
    assert 0 < model.contract.default_threshold < 1


def test_contract_round_trips_through_metadata(model_path: Path) -> None:
    contract = ModelFile.open(model_path).contract
    assert ModelContract.from_metadata(contract.to_metadata()) == contract


def test_a_plain_onnx_file_is_not_a_hemaview_model(tmp_path: Path) -> None:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [1, 4, 4, 3])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        str(path),
    )
    with pytest.raises(ModelContractError, match="not a Hemaview model"):
        Segmenter.open(path)


def test_missing_keys_are_named(model_path: Path, tmp_path: Path) -> None:
    def drop(model: onnx.ModelProto) -> None:
        meta = _meta(model)
        del meta[KEY_PREPROCESS]
        _set_meta(model, meta)

    path = _rewrite(model_path, tmp_path / "incomplete.onnx", drop)
    with pytest.raises(ModelContractError, match=KEY_PREPROCESS.replace(".", r"\.")):
        ModelFile.open(path)


def test_unknown_schema_version_is_refused(model_path: Path, tmp_path: Path) -> None:
    def bump(model: onnx.ModelProto) -> None:
        _set_meta(model, {**_meta(model), KEY_SCHEMA_VERSION: "99"})

    path = _rewrite(model_path, tmp_path / "future.onnx", bump)
    with pytest.raises(ModelContractError, match="schema 99"):
        ModelFile.open(path)


def test_schema_1_models_are_read_with_the_adaptive_field_of_view(tmp_path: Path) -> None:
    """Schema 1 recorded the fixed-threshold detector's `threshold` and `min_fill`; such a
    model still opens, and its photos go through the adaptive detector (which finds the same
    circle on IDRiD: tests/inference/test_fov.py and the note of the field-of-view change)."""
    import json

    from inference.contract import PreprocessRecipe
    from inference.fov import FovParams

    schema_1 = json.loads(PreprocessRecipe(working_size=256).to_json())
    schema_1["fov"] = {
        "analysis_size": 512,
        "threshold": 20,
        "margin": 0.02,
        "min_radius_frac": 0.2,
        "min_fill": 0.85,
    }
    text = json.dumps(schema_1)
    recipe = PreprocessRecipe.from_json(text, schema=1)
    assert recipe.fov == FovParams()  # the schema-1 fields, defaults for the new ones
    with pytest.raises(ValueError, match="threshold"):
        PreprocessRecipe.from_json(text, schema=2)  # schema 2 has no such field


def test_a_schema_1_contract_restated_as_the_current_schema_keeps_its_recipe(
    model_path: Path,
) -> None:
    from inference.contract import READABLE_SCHEMAS, SCHEMA_VERSION

    contract = ModelFile.open(model_path).contract
    assert contract.schema_version in READABLE_SCHEMAS
    again = ModelContract.from_metadata(
        {**contract.to_metadata(), KEY_SCHEMA_VERSION: str(SCHEMA_VERSION)}
    )
    assert again.preprocess == contract.preprocess


def _with_fov(model_path: Path, dst: Path, **fov: object) -> Path:
    """A restamped copy of the model whose recorded field-of-view parameters have `fov` in."""

    def edit(model: onnx.ModelProto) -> None:
        meta = _meta(model)
        recipe = json.loads(meta[KEY_PREPROCESS])
        recipe["fov"].update(fov)
        _set_meta(model, {**meta, KEY_PREPROCESS: json.dumps(recipe), KEY_SHA256: "0" * 64})

    path = _rewrite(model_path, dst, edit)
    stamp_sha256(path)
    return path


def test_the_shipped_model_recorded_before_the_detector_numbers_runs_with_todays(
    model_path: Path,
) -> None:
    """The shipped model names "adaptive-1" without its numbers (schema 2): it opens, with the
    numbers this code runs, which made it (see inference.fov.FovParams)."""
    model = ModelFile.open(model_path)
    recorded = json.loads(
        _meta(onnx.load(str(model_path), load_external_data=False))[KEY_PREPROCESS]
    )
    assert model.contract.schema_version == 2 and "constants" not in recorded["fov"]
    assert model.contract.preprocess.fov.detector == DETECTOR == "adaptive-1"
    assert model.contract.preprocess.fov.constants == CONSTANTS


def test_a_model_recorded_with_another_detector_is_refused(
    model_path: Path, tmp_path: Path
) -> None:
    path = _with_fov(model_path, tmp_path / "other.onnx", detector="adaptive-2", rays=720)
    with pytest.raises(ModelContractError, match=r"detector 'adaptive-2'.*does not implement"):
        ModelFile.open(path)


def test_a_model_recorded_with_other_numbers_under_the_same_tag_is_refused(
    model_path: Path, tmp_path: Path
) -> None:
    numbers = {**asdict(CONSTANTS), "min_sectors": 5}
    path = _with_fov(model_path, tmp_path / "changed.onnx", constants=numbers)
    with pytest.raises(ModelContractError, match=r"other numbers.*min_sectors 5 \(here 6\)"):
        ModelFile.open(path)
    # the same numbers as this code's are accepted
    same = _with_fov(model_path, tmp_path / "same.onnx", constants=asdict(CONSTANTS))
    assert ModelFile.open(same).contract.preprocess.fov == FovParams()


def test_a_current_schema_recipe_without_the_detector_numbers_is_incomplete(
    model_path: Path,
) -> None:
    from inference.contract import SCHEMA_VERSION

    contract = ModelFile.open(model_path).contract
    meta = {**contract.to_metadata(), KEY_SCHEMA_VERSION: str(SCHEMA_VERSION)}
    recipe = json.loads(meta[KEY_PREPROCESS])
    del recipe["fov"]["constants"]
    with pytest.raises(ModelContractError, match=r"malformed.*constants"):
        ModelContract.from_metadata({**meta, KEY_PREPROCESS: json.dumps(recipe)})


def test_the_export_records_the_field_of_view_detector_and_its_numbers(tmp_path: Path) -> None:
    import torch

    from inference.contract import SCHEMA_VERSION, PreprocessRecipe
    from training.export import export_model
    from training.model import HemaviewNet, ModelConfig

    torch.manual_seed(0)
    path = tmp_path / "exported.onnx"
    export_model(
        HemaviewNet(ModelConfig()).eval(),
        path,
        PreprocessRecipe(working_size=64),
        check_parity=False,  # tests/training/test_finetune.py checks the export's parity
    )
    meta = _meta(onnx.load(str(path)))
    assert meta[KEY_SCHEMA_VERSION] == str(SCHEMA_VERSION)
    fov = json.loads(meta[KEY_PREPROCESS])["fov"]
    assert fov["detector"] == DETECTOR and fov["constants"] == asdict(CONSTANTS)
    assert ModelFile.open(path).contract.preprocess.fov == FovParams()


def test_changed_weights_fail_the_sha256_check(model_path: Path, tmp_path: Path) -> None:
    def tamper(model: onnx.ModelProto) -> None:
        init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        values = numpy_helper.to_array(init).copy()
        values.flat[0] += 1.0
        init.CopyFrom(numpy_helper.from_array(values, init.name))

    path = _rewrite(model_path, tmp_path / "tampered.onnx", tamper)
    with pytest.raises(ModelContractError, match="changed or damaged"):
        ModelFile.open(path)


def test_restamped_copy_with_new_metadata_is_accepted(model_path: Path, tmp_path: Path) -> None:
    def rename(model: onnx.ModelProto) -> None:
        _set_meta(model, {**_meta(model), KEY_SHA256: "0" * 64, "hemaview.model_name": "renamed"})

    path = _rewrite(model_path, tmp_path / "renamed.onnx", rename)
    digest = stamp_sha256(path)
    model = ModelFile.open(path)
    assert model.name == "renamed"
    assert model.sha256 == digest


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"this is not a model", "not a valid ONNX"), (None, "not found")],
)
def test_broken_model_files_are_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "broken.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelContractError, match=message):
        Segmenter.open(path)


def test_truncated_model_is_refused(model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.onnx"
    path.write_bytes(model_path.read_bytes()[:1_000_000])
    with pytest.raises(ModelContractError, match=r"damaged|not a valid"):
        ModelFile.open(path)


def test_one_onnxruntime_session_per_model(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract is read from the file itself: opening and checking a model builds no
    session, and a segmenter builds exactly one, its backend's."""
    from inference.onnx_runtime import onnxruntime

    ort = onnxruntime()
    built: list[object] = []
    real = ort.InferenceSession

    def counting(*args: object, **kwargs: object) -> object:
        session = real(*args, **kwargs)
        built.append(session)
        return session

    monkeypatch.setattr(ort, "InferenceSession", counting)
    model = ModelFile.open(model_path)
    assert built == []
    segmenter = Segmenter.open(model_path, backend="cpu")
    try:
        session = segmenter.backend.session  # type: ignore[attr-defined]
        assert built == [session]
        # and what the file says is what onnxruntime reads from it
        meta = dict(session.get_modelmeta().custom_metadata_map)
        assert ModelContract.from_metadata(meta) == model.contract
    finally:
        segmenter.close()
