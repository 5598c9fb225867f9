"""Mirror averaging: a graph exported with it, and training's out-of-fold predictions, are the
mean over a photo and its mirror images, so a mirrored photo gets the mirrored overlay
whichever backend runs the file, and the figures are of what the clinic runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import idrid_photo

from inference import Segmenter
from inference.contract import PreprocessRecipe
from inference.onnx_runtime import onnxruntime
from inference.preprocess import read_for_model
from training.export import INPUT_NAME, OUTPUT_NAME, ExportInfo, export_model
from training.finetune import predict_logits
from training.model import HemaviewNet, ModelConfig

SIZE = 256


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """IDRiD_01 as the model sees it: (S, S, 3) uint8 after field of view and CLAHE."""
    _, pre = read_for_model(idrid_photo(1), PreprocessRecipe(working_size=SIZE))
    return pre.image


@pytest.fixture(scope="module")
def net() -> HemaviewNet:
    torch.manual_seed(0)  # an untrained U-Net: nothing about it is mirror-symmetric
    return HemaviewNet(ModelConfig(reconstruction=False)).eval()


def _export(net: HemaviewNet, path: Path, mirror: bool) -> Path:
    export_model(net, path, PreprocessRecipe(working_size=SIZE), ExportInfo(mirror_average=mirror))
    return path


def test_an_averaging_graph_gives_a_mirrored_photo_the_mirrored_overlay(
    net: HemaviewNet, photo: np.ndarray, tmp_path: Path
) -> None:
    ort = onnxruntime()
    mismatch = {}
    for mirror in (False, True):
        path = _export(net, tmp_path / f"mirror-{mirror}.onnx", mirror)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def overlay(image: np.ndarray, session: object = session) -> np.ndarray:
            (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(image[None])})  # type: ignore[attr-defined]
            return out[0, 0]

        plain = overlay(photo)
        mismatch[mirror] = max(
            float(np.abs(overlay(photo[:, ::-1])[:, ::-1] - plain).max()),  # the other eye
            float(np.abs(overlay(photo[::-1])[::-1] - plain).max()),  # upside down
        )
    assert mismatch[True] < 1e-4
    # the check can fail: one pass of the same network is not symmetric
    assert mismatch[False] > 1e-3


def test_training_predicts_as_the_averaging_graph_does_through_the_segmenter(
    net: HemaviewNet, photo: np.ndarray, tmp_path: Path
) -> None:
    path = _export(net, tmp_path / "model.onnx", True)
    segmenter = Segmenter.open(path)
    try:
        working = segmenter.predict(idrid_photo(1)).working.astype(np.float32)
    finally:
        segmenter.close()
    averaged = 1 / (1 + np.exp(-predict_logits(net, photo, mirror=True)))
    single = 1 / (1 + np.exp(-predict_logits(net, photo)))
    # an untrained net says about 0.01 everywhere, so the differences are small in absolute terms
    assert np.abs(working - averaged).max() < 5e-4  # the map is cached as float16
    assert np.abs(working - single).max() > 4e-3
