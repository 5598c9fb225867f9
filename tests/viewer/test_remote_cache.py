"""The prediction cache on a CPU with a Triton server: one entry per photo, wherever it ran.

On a CPU the shipped model runs as its INT8 file, and a Triton server runs the fp32 file it
was made from. A photo the server annotated must open from the cache (no model run here) and
must not be sent again at the next pre-annotation, while its record still says that the
fp32 file ran on the server. Real parts throughout: the shipped INT8 and fp32 files, real
IDRiD photos, a real Triton server (tests/triton_server.py) and the viewer's own
pre-annotation job, waited on by its signals.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import idrid_photo
from triton_server import TritonServer

from inference import Segmenter
from inference.backends.base import Backend
from inference.dispatch import Dispatcher, RemoteConfig
from inference.model_file import ModelFile
from inference.triton_repo import write_repository
from viewer.model.pred_cache import PredictionCache, PredictionSummary
from viewer.model.session import ReviewSession
from viewer.qt.workers import PreannotationJob

# Read when pytest-qt creates the application, after this module is imported.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytestmark = pytest.mark.slow

TIMEOUT_MS = 300_000  # the 512-pixel model takes seconds per photo on a busy 2-core machine


class CountingBackend:
    """The real local backend, counting the photos it runs (what "no model run" means)."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.device = inner.device
        self.reason = inner.reason
        self.preferred_batch = inner.preferred_batch
        self.photos = 0
        self._lock = threading.Lock()  # the local lane and an opening may run at once

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            self.photos += len(batch)
        return self.inner.run(batch)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def fp32(model_path: Path) -> ModelFile:
    return ModelFile.open(model_path)


@pytest.fixture(scope="module")
def server(fp32: ModelFile, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The CPU stand-in serving the shipped fp32 file, as a clinic's GPU server would."""
    repository = tmp_path_factory.mktemp("triton-repo")
    write_repository(repository, fp32, cpu=True)
    with TritonServer(repository, load=[fp32.contract.model_name]) as running:
        yield running


class Recorder:
    def __init__(self, job: PreannotationJob):
        self.results: dict[str, PredictionSummary] = {}
        self.failures: list[tuple[str, str, str]] = []
        self.started: list[str] = []
        job.result.connect(lambda p, s: self.results.__setitem__(Path(p).name, s))
        job.failed.connect(lambda p, m, k: self.failures.append((p, m, k)))
        job.photo_started.connect(lambda p: self.started.append(Path(p).name))


def preannotate(
    qtbot: Any, segmenter: Segmenter, cache: PredictionCache, paths: list[Path], d: Dispatcher
) -> Recorder:
    job = PreannotationJob(segmenter, cache, [str(p) for p in paths], dispatcher=d)
    seen = Recorder(job)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS) as finished:
        job.start()
    assert finished.args == [False]  # not cancelled
    assert not seen.failures
    return seen


def test_a_photo_annotated_on_the_server_opens_from_the_cache_and_is_not_sent_again(
    qtbot: Any, fp32: ModelFile, server: TritonServer, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    here, there = photos / "IDRiD_01.jpg", photos / "IDRiD_03.jpg"
    shutil.copyfile(idrid_photo(1), here)
    shutil.copyfile(idrid_photo(3), there)

    # The shipped model as a CPU-only machine opens it: the INT8 file, standing for fp32.
    segmenter = Segmenter.open(backend="cpu")
    assert segmenter.model.path.name == "hemorrhage-int8.onnx", segmenter.model_reason
    assert segmenter.source_model.sha256 == fp32.sha256 != segmenter.model.sha256
    local = CountingBackend(segmenter.backend)
    segmenter.backend = local
    cache = PredictionCache(tmp_path / "cache")
    session = ReviewSession(segmenter=segmenter, cache=cache)
    # budget 0: the server takes every photo it can; the local lane only what comes back
    dispatcher = Dispatcher(segmenter, RemoteConfig.parse(server.grpc_url), budget_s=0)
    name = fp32.contract.model_name
    try:
        # One photo opened before any pre-annotation runs here, on the INT8 file.
        opened = session.open(here, predict_if_missing=True)
        assert not opened.from_cache and local.photos == 1
        assert opened.prediction is not None
        assert opened.prediction.provenance.device == "cpu"
        assert opened.prediction.provenance.model_file == "hemorrhage-int8.onnx"
        sent_before = server.statistics(name)["inference_count"]

        # Pre-annotating the folder: the photo done here comes from the cache, the other
        # goes to the server, and nothing runs here.
        first = preannotate(qtbot, segmenter, cache, [here, there], dispatcher)
        assert first.started == ["IDRiD_03.jpg"]
        assert first.results["IDRiD_01.jpg"].from_cache
        assert first.results["IDRiD_03.jpg"].device == "triton"
        assert server.statistics(name)["inference_count"] == sent_before + 1
        assert local.photos == 1

        # Pre-annotating again: everything from the cache, nothing sent, nothing run.
        again = preannotate(qtbot, segmenter, cache, [here, there], dispatcher)
        assert again.started == []
        assert all(s.from_cache for s in again.results.values())
        assert again.results["IDRiD_03.jpg"].device == "triton"
        assert again.results["IDRiD_01.jpg"].device == "cpu"
        assert server.statistics(name)["inference_count"] == sent_before + 1
        assert local.photos == 1

        # Opening the photo the server annotated: the cache's map, no model run here, and
        # the record still says the fp32 file ran on the server.
        reopened = session.open(there, predict_if_missing=True)
        assert reopened.from_cache, "the server's result was not found in the cache"
        assert local.photos == 1
        assert reopened.prediction is not None
        assert len(reopened.prediction.lesions) == first.results["IDRiD_03.jpg"].lesion_count
        model = reopened.document.to_record("reviewer").model
        assert model is not None
        assert (model.device, model.sha256, model.file) == ("triton", fp32.sha256, fp32.path.name)
    finally:
        dispatcher.close()
        segmenter.close()
