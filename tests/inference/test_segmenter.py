"""The public API on real photos with the real model and the real ONNX Runtime."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import REPO, idrid_photo

from inference import (
    BackendError,
    ImageReadError,
    NotFundusError,
    PhotoFailure,
    Prediction,
    Segmenter,
    read_photo,
)
from inference.backends.onnx_local import OnnxRuntimeBackend, check_cuda
from inference.model_file import ModelFile


@pytest.fixture(scope="module")
def prediction(segmenter: Segmenter) -> Prediction:
    return segmenter.predict(idrid_photo(1))


def test_probability_is_full_resolution_and_calibrated(prediction: Prediction) -> None:
    p = prediction.probability
    assert p.shape == (2848, 4288)
    assert p.dtype == np.float32
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0
    # outside the field of view there is no lesion
    assert p[0, 0] == 0.0 and p[-1, -1] == 0.0


def test_mask_and_lesions_follow_the_threshold(
    prediction: Prediction, segmenter: Segmenter
) -> None:
    assert prediction.threshold == segmenter.contract.default_threshold
    assert np.array_equal(prediction.mask, prediction.probability >= prediction.threshold)
    total = 0
    for lesion in prediction.lesions:
        x, y, w, h = lesion.bbox
        assert x >= 0 and x + w <= 4288 and y >= 0 and y + h <= 2848
        assert lesion.area_px >= segmenter.contract.min_lesion_area_px
        assert prediction.threshold <= lesion.mean_probability <= lesion.max_probability <= 1.0
        assert prediction.mask[round(lesion.centroid[1]), round(lesion.centroid[0])] or w > 2
        total += lesion.area_px
    assert total <= int(prediction.mask.sum())
    areas = [lesion.area_px for lesion in prediction.lesions]
    assert areas == sorted(areas, reverse=True)


def test_provenance_says_what_ran_where_and_why(
    prediction: Prediction, segmenter: Segmenter
) -> None:
    prov = prediction.provenance
    assert prov.model_sha256 == segmenter.model.sha256
    assert prov.device in ("cuda", "cpu")
    if prov.device == "cpu":
        assert "CPU" in prov.device_reason and ":" in prov.device_reason
    assert set(prov.timings_ms) == {"read", "preprocess", "model", "postprocess"}
    assert prov.photo_size == (4288, 2848)
    assert len(prov.photo_sha256) == 64


def test_array_input_matches_photo_input_and_path_input(
    segmenter: Segmenter, prediction: Prediction
) -> None:
    photo = read_photo(idrid_photo(1))
    from_array = segmenter.predict(photo.rgb)
    from_photo = segmenter.predict(photo)
    assert np.array_equal(from_array.probability, from_photo.probability)
    # A path is decoded at reduced scale for speed; the map must still be the same map.
    diff = np.abs(from_array.probability - prediction.probability)
    assert float(diff.mean()) < 0.002
    assert float(np.quantile(diff, 0.999)) < 0.1


def test_threshold_override_changes_only_the_mask(
    segmenter: Segmenter, prediction: Prediction
) -> None:
    low = segmenter.predict(idrid_photo(1), threshold=0.05)
    assert np.array_equal(low.probability, prediction.probability)
    assert low.mask.sum() >= prediction.mask.sum()


def test_one_post_processing_whatever_the_route(
    segmenter: Segmenter, prediction: Prediction
) -> None:
    """A fresh prediction, one rebuilt from its cached map and one moved to another
    threshold give the same lesions at the same threshold; the prediction keeps the model's
    minimum area."""
    assert prediction.min_area_px == segmenter.contract.min_lesion_area_px
    assert prediction.working.dtype == np.float16
    fresh = segmenter.predict(idrid_photo(1), threshold=0.3)
    rebuilt = segmenter.rebuild(
        prediction.photo, prediction.geometry, prediction.working, prediction.provenance, 0.3
    )
    moved = prediction.at_threshold(0.3)
    assert fresh.lesions == rebuilt.lesions == moved
    assert np.array_equal(fresh.mask, rebuilt.mask)
    assert rebuilt.provenance.threshold == fresh.provenance.threshold == 0.3
    with pytest.raises(ValueError, match="between 0 and 1"):
        segmenter.rebuild(
            prediction.photo, prediction.geometry, prediction.working, prediction.provenance, 1.0
        )


def test_predict_many_keeps_order_reports_failures_and_progress(
    segmenter: Segmenter, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(idrid_photo(2).read_bytes()[:200_000])
    not_fundus = tmp_path / "grey.png"
    import cv2

    cv2.imwrite(str(not_fundus), np.full((600, 800, 3), 128, np.uint8))
    sources = [idrid_photo(3), tmp_path / "missing.jpg", truncated, not_fundus, idrid_photo(4)]
    seen: list[tuple[int, int]] = []
    results = list(segmenter.predict_many(sources, progress=lambda d, t: seen.append((d, t))))
    assert [s for s, _ in results] == sources
    kinds = [type(r) for _, r in results]
    assert kinds == [Prediction, PhotoFailure, PhotoFailure, PhotoFailure, Prediction]
    failures = [r for _, r in results if isinstance(r, PhotoFailure)]
    assert "not found" in failures[0].message and isinstance(failures[0].error, ImageReadError)
    assert "truncated" in failures[1].message
    assert isinstance(failures[2].error, NotFundusError)
    assert seen == [(i, 5) for i in range(1, 6)]


def test_predict_many_stops_when_cancelled(segmenter: Segmenter) -> None:
    cancel = threading.Event()
    got = []
    for _, result in segmenter.predict_many([idrid_photo(n) for n in (1, 2, 5, 17)], cancel=cancel):
        got.append(result)
        cancel.set()
    assert len(got) == 1


def test_provider_report_on_this_machine(model_path: Path) -> None:
    model = ModelFile.open(model_path)
    cuda = check_cuda()
    cpu = OnnxRuntimeBackend(model, device="cpu")
    assert cpu.device == "cpu" and "asked for" in cpu.reason
    if cuda.usable:
        assert OnnxRuntimeBackend(model, device="cuda").device == "cuda"
    else:
        assert cuda.reason
        with pytest.raises(BackendError, match="cannot be used"):
            OnnxRuntimeBackend(model, device="cuda")
        auto = OnnxRuntimeBackend(model, device="auto")
        assert auto.device == "cpu" and cuda.reason in auto.reason


def test_injected_session_reports_what_bound(model_path: Path) -> None:
    model = ModelFile.open(model_path)
    session = ort.InferenceSession(model.data, providers=["CPUExecutionProvider"])
    backend = OnnxRuntimeBackend(model, session=session)
    assert backend.device == "cpu"
    out = backend.run(np.zeros((2, 64, 64, 3), np.uint8))
    assert out.shape == (2, 64, 64) and out.dtype == np.float32


def test_running_the_model_sends_no_telemetry(model_path: Path, tmp_path: Path) -> None:
    """onnxruntime's PyPI builds carry Microsoft telemetry (a device id under
    ~/.cache/Microsoft and events to a Microsoft server); a clinic machine must not."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"))
    code = (
        "import sys; from inference import Segmenter;"
        "seg = Segmenter.open(sys.argv[1]); print(seg.predict(sys.argv[2]).probability.shape)"
    )
    photo = sorted((REPO / "resources" / "samples").glob("*.jpg"))[0]
    done = subprocess.run(
        [sys.executable, "-c", code, str(model_path), str(photo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("Microsoft")), "onnxruntime wrote its telemetry id"


def test_bundled_cuda_status_only_in_the_gpu_build_and_says_whether_libraries_load(
    tmp_path: Path,
) -> None:
    """The GPU installer's runtime hook names its library folders; the self-test then says
    whether the bundled CUDA and cuDNN load, which needs no GPU. Here the nvidia wheels of the
    development environment stand in for the bundle (same layout, same loader)."""
    import os
    import subprocess
    import sys

    code = "from inference.backends.onnx_local import bundled_cuda_status as s; print(repr(s()))"
    env = {k: v for k, v in os.environ.items() if k != "HEMAVIEW_BUNDLED_CUDA"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert plain.stdout.strip() == "None", plain.stderr
    gpu = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "HEMAVIEW_BUNDLED_CUDA": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert gpu.returncode == 0, gpu.stderr
    assert "bundled CUDA 13." in gpu.stdout and "libraries load" in gpu.stdout, gpu.stdout
