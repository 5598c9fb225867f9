"""The budget dispatcher with a real Triton server: every photo gets exactly one result.

The photos are small synthetic fundus-like images where their content does not matter,
and the model is the small twin of the real one (same network, working size 128), so a
run of two dozen photos takes a second or two on two cores. Real IDRiD photos go through
the CLI. Tests that kill a server start their own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import idrid_photo
from triton_server import TritonServer, derive_model, kill_and_wait

from inference import BackendError, PhotoFailure, Prediction, Segmenter
from inference.cli import label_files_for
from inference.cli import main as cli_main
from inference.dispatch import Dispatcher, DispatchResult, RemoteConfig, remote_health
from inference.model_file import ModelFile
from inference.triton_repo import RepoSettings, write_repository

pytestmark = pytest.mark.slow

SMALL = 128


def fundus_like(seed: int, height: int = 300, width: int = 400) -> np.ndarray:
    """An orange disc on black with a little noise and a few dark red spots."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    radius = min(height, width) * 0.45
    distance = np.hypot(yy - height / 2, xx - width / 2)
    inside = distance < radius
    image = np.zeros((height, width, 3), np.float32)
    image[inside] = (
        np.array([200, 90, 40], np.float32) * (1 - 0.3 * distance[inside] / radius)[:, None]
    )
    image += rng.normal(0, 6, image.shape)
    for _ in range(5):
        cy, cx = rng.uniform(-0.6, 0.6, 2) * radius + (height / 2, width / 2)
        image[np.hypot(yy - cy, xx - cx) < rng.uniform(3, 8)] = (110, 20, 15)
    image[~inside] = 0
    return np.clip(image, 0, 255).astype(np.uint8)


PHOTOS = [fundus_like(k) for k in range(16)]


@pytest.fixture(scope="module")
def small_model(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return derive_model(
        model_path, tmp_path_factory.mktemp("model") / "small.onnx", working_size=SMALL
    )


@pytest.fixture(scope="module")
def segmenter(small_model: Path) -> Iterator[Segmenter]:
    seg = Segmenter.open(small_model, backend="cpu")
    yield seg
    seg.close()


@pytest.fixture(scope="module")
def repository(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("triton-repo")
    model = ModelFile.open(small_model)
    write_repository(folder, model, cpu=True, settings=RepoSettings(model_name="small"))
    write_repository(folder, model, cpu=True, settings=RepoSettings(model_name="slow", delay_s=2.0))
    write_repository(
        folder,
        model,
        cpu=True,
        settings=RepoSettings(model_name="paced", max_batch_size=2, preferred_batch_sizes=(2,),
                              delay_s=0.3),
    )  # fmt: skip
    write_repository(
        folder,
        model,
        cpu=True,
        settings=RepoSettings(
            model_name="tiny-queue",
            max_batch_size=1,
            preferred_batch_sizes=(1,),
            max_queue_size=1,
            delay_s=0.3,
        ),
    )
    other = derive_model(small_model, folder.parent / "other.onnx", version="v2")
    write_repository(
        folder, ModelFile.open(other), cpu=True, settings=RepoSettings(model_name="other")
    )
    return folder


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    with TritonServer(repository, load=["small"]) as running:
        yield running


def remote(server: TritonServer, name: str = "small", **options: object) -> RemoteConfig:
    return RemoteConfig.parse(server.grpc_url, model_name=name, **options)  # type: ignore[arg-type]


def check_one_each(results: list[DispatchResult], total: int) -> None:
    """Every photo exactly one result, each saying where it ran."""
    assert sorted(r.index for r in results) == list(range(total))
    for r in results:
        if isinstance(r.result, Prediction):
            expected = {"local": "cpu", "remote": "triton"}[r.ran_on]
            assert r.result.provenance.device == expected
        else:
            assert isinstance(r.result, PhotoFailure)


def run(dispatcher: Dispatcher, photos: list, **kwargs: object) -> list[DispatchResult]:
    results = list(dispatcher.run(photos, **kwargs))  # type: ignore[arg-type]
    check_one_each(results, len(photos))
    return results


def test_local_only_sends_nothing(segmenter: Segmenter, server: TritonServer) -> None:
    before = server.statistics("small")["inference_count"]
    dispatcher = Dispatcher(segmenter)
    results = run(dispatcher, PHOTOS[:6])
    assert {r.ran_on for r in results} == {"local"}
    report = dispatcher.last_report
    assert report is not None and (report.local, report.remote, report.failed) == (6, 0, 0)
    assert dispatcher.local_photos_per_s is not None
    # a server was running, but none was configured: no photo left the machine
    assert server.statistics("small")["inference_count"] == before


def test_all_to_the_remote_equals_local(segmenter: Segmenter, server: TritonServer) -> None:
    local = {r.index: r.result for r in run(Dispatcher(segmenter), PHOTOS)}
    dispatcher = Dispatcher(segmenter, remote(server), budget_s=0)
    before = server.statistics("small")["inference_count"]
    results = run(dispatcher, PHOTOS)
    assert {r.ran_on for r in results} == {"remote"}
    for r in results:
        got, expected = r.result, local[r.index]
        assert isinstance(got, Prediction) and isinstance(expected, Prediction)
        np.testing.assert_allclose(got.working, expected.working, atol=1e-3)  # float16 copies
        np.testing.assert_allclose(got.probability, expected.probability, atol=1e-5)
        assert len(got.lesions) == len(expected.lesions)
        assert "Triton server" in got.provenance.device_reason
    assert server.statistics("small")["inference_count"] - before == len(PHOTOS)
    dispatcher.close()


def test_a_generous_budget_keeps_every_photo_here(
    segmenter: Segmenter, server: TritonServer
) -> None:
    before = server.statistics("small")["inference_count"]
    dispatcher = Dispatcher(segmenter, remote(server), budget_s=600)
    results = run(dispatcher, PHOTOS)
    assert {r.ran_on for r in results} == {"local"}
    assert server.statistics("small")["inference_count"] == before
    dispatcher.close()


def test_a_tight_budget_splits_between_both(segmenter: Segmenter, server: TritonServer) -> None:
    photos = PHOTOS * 2
    dispatcher = Dispatcher(segmenter, remote(server), budget_s=0.5)
    run(dispatcher, photos)
    report = dispatcher.last_report
    assert report is not None
    assert report.local > 0 and report.remote > 0, report.summary()
    assert report.local + report.remote == len(photos)
    assert "here" in report.summary() and "on the server" in report.summary()
    dispatcher.close()


def test_an_unreachable_server_leaves_everything_local(segmenter: Segmenter) -> None:
    dispatcher = Dispatcher(segmenter, RemoteConfig.parse("127.0.0.1:9"), budget_s=0)
    results = run(dispatcher, PHOTOS[:6])
    assert {r.ran_on for r in results} == {"local"}
    report = dispatcher.last_report
    assert report is not None and report.failed == 0
    assert "cannot be reached" in report.remote_problem
    assert "cannot be reached" in report.summary()


def test_a_mismatched_model_is_never_sent_a_photo(
    segmenter: Segmenter, server: TritonServer
) -> None:
    server.load_model("other")
    dispatcher = Dispatcher(segmenter, remote(server, "other"), budget_s=0)
    results = run(dispatcher, PHOTOS[:6])
    assert {r.ran_on for r in results} == {"local"}
    report = dispatcher.last_report
    assert report is not None and "another model file" in report.remote_problem
    assert server.statistics("other")["inference_count"] == 0


def test_a_slow_server_times_out_and_its_photos_come_back(
    segmenter: Segmenter, server: TritonServer
) -> None:
    server.load_model("slow")
    dispatcher = Dispatcher(segmenter, remote(server, "slow", request_timeout_s=0.5), budget_s=0)
    results = run(dispatcher, PHOTOS[:8])
    assert {r.ran_on for r in results} == {"local"}
    returned = [r for r in results if r.note]
    assert returned, "the photos sent to the slow server should come back with a note"
    for r in returned:
        assert "did not answer within 0.5 s" in r.note
        assert isinstance(r.result, Prediction)
        assert "sent back from the remote server" in r.result.provenance.device_reason
    report = dispatcher.last_report
    assert report is not None and report.returned == len(returned) and report.failed == 0
    assert "did not answer" in report.remote_problem


def test_a_full_server_hands_photos_back(segmenter: Segmenter, server: TritonServer) -> None:
    server.load_model("tiny-queue")
    config = remote(server, "tiny-queue", max_in_flight=4)
    dispatcher = Dispatcher(segmenter, config, budget_s=0)
    results = run(dispatcher, PHOTOS)
    report = dispatcher.last_report
    assert report is not None and report.failed == 0
    assert any("is full" in e for e in report.remote_errors), report.remote_errors
    assert report.returned > 0
    assert all("is full" in r.note for r in results if r.note)
    dispatcher.close()


def test_cancel_stops_both_sides(segmenter: Segmenter, server: TritonServer) -> None:
    server.load_model("slow")
    cancel = threading.Event()
    dispatcher = Dispatcher(segmenter, remote(server, "slow"), budget_s=0)
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    results = list(dispatcher.run(PHOTOS, cancel=cancel))
    assert time.monotonic() - t0 < 2.0  # the slow model takes 2 s: its request was cancelled
    assert len(results) < len(PHOTOS)
    assert len({r.index for r in results}) == len(results)
    report = dispatcher.last_report
    assert report is not None and report.cancelled
    dispatcher.close()
    # the local lane stops too: closing the iterator early ends the run
    local = Dispatcher(segmenter)
    iterator = local.run(PHOTOS * 4)
    next(iterator)
    iterator.close()
    assert local.last_report is not None and local.last_report.cancelled
    assert local.last_report.local < len(PHOTOS) * 4


def test_a_server_killed_mid_batch(segmenter: Segmenter, repository: Path) -> None:
    with TritonServer(repository, load=["paced"]) as doomed:
        dispatcher = Dispatcher(segmenter, remote(doomed, "paced"), budget_s=0)
        results: list[DispatchResult] = []
        for r in dispatcher.run(PHOTOS * 2):
            results.append(r)
            if r.ran_on == "remote" and doomed.process and doomed.process.poll() is None:
                doomed.kill()  # the server dies while more requests are on the wire
        check_one_each(results, len(PHOTOS) * 2)
        report = dispatcher.last_report
        assert report is not None and report.failed == 0
        assert report.remote > 0 and report.local > 0
        # the connection drops (usually), or the server saw its worker die first
        problem = report.remote_problem
        assert "went away" in problem or "returned an error" in problem, problem
        dispatcher.close()


def test_a_dead_model_worker_sends_everything_back(segmenter: Segmenter, repository: Path) -> None:
    with TritonServer(repository, load=["small"]) as server:
        config = remote(server)
        assert remote_health(config, segmenter.model)[0]
        for pid in server.stub_pids():
            kill_and_wait(pid)
        dispatcher = Dispatcher(segmenter, config, budget_s=0)
        results = run(dispatcher, PHOTOS[:6])
        assert {r.ran_on for r in results} == {"local"}
        report = dispatcher.last_report
        assert report is not None and report.failed == 0
        assert "returned an error" in report.remote_problem, report.remote_problem
        assert not remote_health(config, segmenter.model, probe=True)[0]


def test_a_bad_photo_fails_once_and_alone(segmenter: Segmenter, server: TritonServer) -> None:
    photos: list = [*PHOTOS[:4], Path("/nonexistent/photo.jpg"), *PHOTOS[4:8]]
    dispatcher = Dispatcher(segmenter, remote(server), budget_s=0)
    results = run(dispatcher, photos)
    failures = [r for r in results if not r.ok]
    assert [f.index for f in failures] == [4]
    assert failures[0].ran_on == ""
    assert dispatcher.last_report is not None and dispatcher.last_report.failed == 1
    dispatcher.close()


def test_cli_overflows_real_photos_to_the_server(
    small_model: Path, server: TritonServer, tmp_path: Path
) -> None:
    photos = [idrid_photo(2), idrid_photo(4)]
    out = tmp_path / "out"
    args = [*map(str, photos), "--out", str(out), "--model", str(small_model)]
    remote_args = ["--remote", server.grpc_url, "--remote-model", "small", "--budget", "0"]
    assert cli_main([*args, *remote_args]) == 0
    for photo in photos:
        mask, prob, provenance = label_files_for(out, photo)
        assert mask.exists() and prob.exists()
        assert json.loads(provenance.read_text())["model"]["device"] == "triton"
    # no server there: every photo still annotated, here
    out2 = tmp_path / "out2"
    args2 = [*map(str, photos), "--out", str(out2), "--model", str(small_model)]
    assert cli_main([*args2, "--remote", "127.0.0.1:9", "--budget", "0"]) == 0
    for photo in photos:
        provenance = label_files_for(out2, photo)[2]
        assert json.loads(provenance.read_text())["model"]["device"] == "cpu"
    assert cli_main([*args2, "--budget", "1"]) == 2  # a budget needs a server


class FailingLocal:
    """The real local backend, except that its first `fail` calls fail as a session can."""

    def __init__(self, backend: Any, fail: int):
        self.backend, self.fail = backend, fail
        self.device, self.reason = backend.device, backend.reason
        self.preferred_batch = backend.preferred_batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.fail > 0:
            self.fail -= 1
            raise BackendError("onnxruntime: out of memory")
        return self.backend.run(batch)

    def close(self) -> None:
        pass


def test_a_photo_the_local_model_fails_on_goes_to_the_remote(
    segmenter: Segmenter, server: TritonServer
) -> None:
    flaky = Segmenter(segmenter.model, FailingLocal(segmenter.backend, fail=1))
    dispatcher = Dispatcher(flaky, remote(server), budget_s=600)
    results = run(dispatcher, PHOTOS[:4])
    assert sorted(r.ran_on for r in results) == ["local", "local", "local", "remote"]
    dispatcher.close()
    # with no server to take it, that photo fails, and says why
    alone = Dispatcher(Segmenter(segmenter.model, FailingLocal(segmenter.backend, fail=1)))
    results = run(alone, PHOTOS[:4])
    (failed,) = [r for r in results if not r.ok]
    assert isinstance(failed.result, PhotoFailure) and "out of memory" in failed.result.message


def test_a_photo_neither_side_can_run_fails_once_with_both_reasons(
    segmenter: Segmenter,
) -> None:
    """The local model fails on a photo while the remote is found unreachable: whichever
    comes first, that photo fails once (with the local reason) and the others run here."""
    flaky = Segmenter(segmenter.model, FailingLocal(segmenter.backend, fail=1))
    dispatcher = Dispatcher(flaky, RemoteConfig.parse("127.0.0.1:9"), budget_s=600)
    seen: list[tuple[int, int]] = []
    results = run(dispatcher, PHOTOS[:4], progress=lambda d, t: seen.append((d, t)))
    (failed,) = [r for r in results if not r.ok]
    assert isinstance(failed.result, PhotoFailure) and "out of memory" in failed.result.message
    assert {r.ran_on for r in results if r.ok} == {"local"}
    assert seen == [(k, 4) for k in range(1, 5)]
    report = dispatcher.last_report
    assert report is not None and (report.local, report.failed) == (3, 1)
    assert "cannot be reached" in report.remote_problem


class FinishFailsOnTheServersSecond(Segmenter):
    """Post-processing raises on the second photo that came back from the server."""

    def __init__(self, seg: Segmenter):
        super().__init__(seg.model, seg.backend)
        self.remote_finished = 0
        self.lock = threading.Lock()

    def finish(self, *args: Any, **kwargs: Any) -> Prediction:
        if kwargs.get("device") == "triton":
            with self.lock:
                self.remote_finished += 1
                if self.remote_finished == 2:
                    raise RuntimeError("the post-processing broke")
        return super().finish(*args, **kwargs)


def test_post_processing_failing_on_a_remote_batch_fails_that_photo_alone(
    segmenter: Segmenter, server: TritonServer
) -> None:
    dispatcher = Dispatcher(FinishFailsOnTheServersSecond(segmenter), remote(server), budget_s=0)
    seen: list[tuple[int, int]] = []
    results = run(dispatcher, PHOTOS[:8], progress=lambda d, t: seen.append((d, t)))
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1 and isinstance(failed[0].result, PhotoFailure)
    assert "the post-processing broke" in failed[0].result.message
    assert {r.ran_on for r in results if r.ok} == {"remote"}
    assert seen == [(k, 8) for k in range(1, 9)]
    report = dispatcher.last_report
    assert report is not None and (report.remote, report.failed) == (7, 1)
    dispatcher.close()
