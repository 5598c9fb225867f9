"""The remote backend against a real Triton server, and the repository it serves.

One server for the module (the CPU stand-in repository, explicit model control: each test
loads the variant it needs). Its inference protocol is restricted to an authorisation
header, so every request here also checks that the header gets through. Tests that kill
or reconfigure a server start their own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import idrid_photo
from google.protobuf import text_format
from test_dispatch import fundus_like
from triton_server import TritonServer, derive_model, kill_and_wait
from tritonclient.grpc import model_config_pb2

from inference import Segmenter
from inference.backends.triton_remote import TritonBackend
from inference.cancel import Cancel
from inference.cli import main as cli_main
from inference.model_file import ModelFile
from inference.remote import RemoteConfig, RemoteError, RemoteErrorKind, remote_health
from inference.remote.errors import classify
from inference.triton_repo import (
    PARAM_MODEL_VERSION,
    PARAM_SHA256,
    RepoSettings,
    cpu_config,
    production_config,
    write_repository,
)

pytestmark = pytest.mark.slow

TOKEN = "Bearer test-token-5"
SMALL = 128  # working size of the small twin of the model: same network, 64x fewer pixels


@pytest.fixture(scope="module")
def models(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelFile]:
    folder = tmp_path_factory.mktemp("models")
    small = derive_model(model_path, folder / "small.onnx", working_size=SMALL)
    other = derive_model(model_path, folder / "other.onnx", working_size=SMALL, version="v2")
    shape = derive_model(model_path, folder / "shape.onnx", working_size=96)
    return {
        "real": ModelFile.open(model_path),
        "small": ModelFile.open(small),
        "other": ModelFile.open(other),
        "shape": ModelFile.open(shape),
    }


def stand_in_repository(folder: Path, models: dict[str, ModelFile]) -> Path:
    """The stand-in repository: the model, its small twin, and the variants the tests need."""
    write_repository(folder, models["real"], cpu=True)
    write_repository(folder, models["small"], cpu=True, settings=RepoSettings(model_name="small"))
    write_repository(
        folder, models["small"], cpu=True, settings=RepoSettings(model_name="slow", delay_s=3.0)
    )
    write_repository(
        folder,
        models["small"],
        cpu=True,
        settings=RepoSettings(
            model_name="tiny-queue",
            max_batch_size=1,
            preferred_batch_sizes=(1,),
            max_queue_size=1,
            delay_s=0.5,
        ),
    )
    write_repository(folder, models["other"], cpu=True, settings=RepoSettings(model_name="other"))
    write_repository(folder, models["shape"], cpu=True, settings=RepoSettings(model_name="shape"))
    return folder


@pytest.fixture(scope="module")
def repository(models: dict[str, ModelFile], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stand_in_repository(tmp_path_factory.mktemp("triton-repo"), models)


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    restricted = f"inference:authorization={TOKEN}"
    with TritonServer(
        repository,
        load=["small"],
        extra_args=[
            f"--grpc-restricted-protocol={restricted}",
            f"--http-restricted-api={restricted}",
        ],
    ) as running:
        yield running


def config(server: TritonServer, name: str = "small", **options: object) -> RemoteConfig:
    values: dict[str, object] = {"model_name": name, "authorization": TOKEN}
    values.update(options)
    return RemoteConfig.parse(server.grpc_url, **values)


def pixels(n: int, size: int = SMALL, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --- the repository


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_both_configurations_parse_and_agree(models: dict[str, ModelFile]) -> None:
    model = models["real"]
    settings = RepoSettings(max_queue_size=16)
    gpu = parse(production_config(model, settings))
    cpu = parse(cpu_config(model, settings))
    # what the client relies on is identical
    for field in ("name", "max_batch_size", "input", "output", "dynamic_batching"):
        assert getattr(gpu, field) == getattr(cpu, field), field
    for key in (PARAM_SHA256, PARAM_MODEL_VERSION):
        assert gpu.parameters[key].string_value == cpu.parameters[key].string_value
    assert gpu.parameters[PARAM_SHA256].string_value == model.sha256
    # and what differs is what must
    assert (gpu.backend, cpu.backend) == ("onnxruntime", "python")
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    assert [g.kind for g in gpu.instance_group] == [kinds.KIND_GPU]
    assert [g.kind for g in cpu.instance_group] == [kinds.KIND_CPU]
    size = model.contract.preprocess.working_size
    (pixels_in,) = gpu.input
    assert pixels_in.name == model.contract.input_name
    assert pixels_in.data_type == model_config_pb2.TYPE_UINT8  # pixels on the wire, not floats
    assert list(pixels_in.dims) == [size, size, 3]
    assert list(gpu.output[0].dims) == [1, size, size]
    assert gpu.output[0].data_type == model_config_pb2.TYPE_FP32
    assert list(gpu.dynamic_batching.preferred_batch_size) == [4, 8]
    assert gpu.dynamic_batching.max_queue_delay_microseconds > 0
    assert gpu.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert len(gpu.model_warmup) == 1


def test_cli_writes_either_repository(model_path: Path, tmp_path: Path) -> None:
    gpu_dir, cpu_dir = tmp_path / "gpu", tmp_path / "cpu"
    assert cli_main(["--triton-repo", str(gpu_dir), "--model", str(model_path)]) == 0
    assert cli_main(["--triton-repo", str(cpu_dir), "--model", str(model_path), "--cpu"]) == 0
    name = ModelFile.open(model_path).name
    for folder in (gpu_dir, cpu_dir):
        assert (folder / name / "1" / "model.onnx").read_bytes() == model_path.read_bytes()
    assert not (gpu_dir / name / "1" / "model.py").exists()
    assert (cpu_dir / name / "1" / "model.py").exists()
    gpu = parse((gpu_dir / name / "config.pbtxt").read_text())
    cpu = parse((cpu_dir / name / "config.pbtxt").read_text())
    assert (gpu.name, gpu.backend, cpu.backend) == (name, "onnxruntime", "python")
    assert gpu.input == cpu.input and gpu.dynamic_batching == cpu.dynamic_batching
    # photos and --triton-repo do not mix
    assert cli_main(["x.jpg", "--triton-repo", str(gpu_dir)]) == 2


def test_the_stand_in_needs_only_numpy_and_onnxruntime(
    models: dict[str, ModelFile], tmp_path: Path
) -> None:
    folder = write_repository(tmp_path, models["small"], cpu=True)
    source = (folder / "1" / "model.py").read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports <= {
        "json",
        "os",
        "time",
        "pathlib",
        "numpy",
        "onnxruntime",
        "triton_python_backend_utils",
    }


# --- the served model against the local one


def test_remote_results_equal_local_results_on_real_photos(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    server.load_model(models["real"].name)
    segmenter = Segmenter.open(models["real"].path, backend="cpu")
    backend = TritonBackend(
        models["real"], RemoteConfig.parse(server.grpc_url, authorization=TOKEN)
    )
    try:
        images = np.stack([segmenter.prepare(idrid_photo(n))[1].image for n in (3, 5)])
        local = segmenter.backend.run(images)
        remote = backend.run(images)
        assert remote.shape == local.shape and remote.dtype == np.float32
        np.testing.assert_allclose(remote, local, atol=1e-5)
        assert backend.device == "triton"
        assert "version 1" in backend.reason and server.grpc_url in backend.reason
    finally:
        backend.close()
        segmenter.close()


def test_http_client_gives_the_same_results(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    grpc_backend = TritonBackend(models["small"], config(server))
    http_backend = TritonBackend(
        models["small"],
        RemoteConfig.parse(f"http://{server.http_url}", model_name="small", authorization=TOKEN),
    )
    try:
        batch = pixels(3)
        np.testing.assert_array_equal(http_backend.run(batch), grpc_backend.run(batch))
    finally:
        http_backend.close()
        grpc_backend.close()


def test_dynamic_batching_merges_concurrent_requests(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    backend = TritonBackend(models["small"], config(server))
    try:
        backend.run(pixels(1))  # warm
        before = server.statistics("small")
        calls = [backend.submit(pixels(1, seed=k)) for k in range(16)]  # one client, 16 threads
        results = [call.result() for call in calls]
        after = server.statistics("small")
    finally:
        backend.close()
    assert all(r.shape == (1, SMALL, SMALL) for r in results)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 16
    assert executions < 16, f"16 requests ran as {executions} executions: nothing was merged"


def test_a_request_carries_the_authorisation_header(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    backend = TritonBackend(models["small"], config(server, authorization=None))
    try:
        with pytest.raises(RemoteError) as caught:
            backend.run(pixels(1))
        assert caught.value.kind == "refused"
        assert "authorisation" in str(caught.value)
    finally:
        backend.close()
    # only a request shows it: the server restricts inference, not health or metadata
    ok, message = remote_health(config(server, authorization=None), models["small"], probe=True)
    assert not ok and "authorisation" in message
    ok, message = remote_health(config(server), models["small"])
    assert ok, message
    assert "matches this model" in message


# --- refusals and failures: each with a reason a user can act on


def test_another_version_of_the_model_is_refused_before_any_photo_is_sent(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    server.load_model("other")
    with pytest.raises(RemoteError) as caught:
        TritonBackend(models["small"], config(server, "other"))
    error = caught.value
    assert error.kind == "mismatch"
    assert "another model file" in str(error)
    assert models["small"].sha256[:12] in str(error) and models["other"].sha256[:12] in str(error)
    assert "version v2" in str(error) and "No photo was sent" in str(error)
    assert server.statistics("other")["inference_count"] == 0
    ok, message = remote_health(config(server, "other"), models["small"])
    assert not ok and "another model file" in message


def test_a_model_with_other_shapes_is_refused(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    server.load_model("shape")
    with pytest.raises(RemoteError) as caught:
        TritonBackend(models["small"], config(server, "shape"))
    assert caught.value.kind == "mismatch"
    assert f"[-1, {SMALL}, {SMALL}, 3]" in str(caught.value)


def test_a_model_the_server_does_not_have_is_refused(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    with pytest.raises(RemoteError) as caught:
        TritonBackend(models["small"], config(server, "no-such-model"))
    assert caught.value.kind == "refused"
    assert "no ready model 'no-such-model'" in str(caught.value)


def test_nothing_listening_is_reported_at_once(models: dict[str, ModelFile]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        cfg = RemoteConfig.parse(f"127.0.0.1:{port}", connect_timeout_s=5)
        with pytest.raises(RemoteError) as caught:
            TritonBackend(models["small"], cfg)
    # refused, not waited out: a connection left to its timeout is a "timeout"
    assert caught.value.kind == "unreachable"
    assert f"127.0.0.1:{port}" in str(caught.value)
    ok, message = remote_health(cfg)
    assert not ok and "cannot be reached" in message


def test_a_server_that_never_answers_times_out(models: dict[str, ModelFile]) -> None:
    with socket.socket() as listener:  # accepts connections and says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        cfg = RemoteConfig.parse(f"127.0.0.1:{port}", connect_timeout_s=0.5)
        with pytest.raises(RemoteError) as caught:
            TritonBackend(models["small"], cfg)
    assert caught.value.kind == "timeout"
    assert "did not answer within 0.5 s" in str(caught.value)


def test_a_slow_model_past_the_request_timeout(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    server.load_model("slow")
    backend = TritonBackend(models["small"], config(server, "slow", request_timeout_s=0.5))
    try:
        with pytest.raises(RemoteError) as caught:
            backend.run(pixels(1))
    finally:
        backend.close()
    assert caught.value.kind == "timeout"
    assert "did not answer within 0.5 s" in str(caught.value)


def test_a_full_queue_is_reported_as_full(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    server.load_model("tiny-queue")
    backend = TritonBackend(models["small"], config(server, "tiny-queue"))
    try:
        calls = [backend.submit(pixels(1, seed=k)) for k in range(5)]
        outcomes: list[str] = []
        for call in calls:
            try:
                call.result()
                outcomes.append("ok")
            except RemoteError as exc:
                outcomes.append(exc.kind)
                assert exc.kind != "full" or "is full" in str(exc)
    finally:
        backend.close()
    # one runs, one waits in the queue of one, the rest are turned away at once
    assert "ok" in outcomes and "full" in outcomes, outcomes
    assert set(outcomes) <= {"ok", "full"}


class WaitedOn(Cancel):
    """A cancel flag that tells when someone is waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited_on = threading.Event()

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        forget = super().listen(listener)
        self.waited_on.set()
        return forget


def test_cancel_stops_a_request_in_flight(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    server.load_model("slow")
    backend = TritonBackend(models["small"], config(server, "slow"))
    cancel = WaitedOn()

    def cancel_once_waited_on() -> None:
        # the reviewer cancels while the result is being waited for, not before
        cancel.waited_on.wait()
        cancel.set()

    canceller = threading.Thread(target=cancel_once_waited_on)
    canceller.start()
    try:
        call = backend.submit(pixels(1))
        # The model sleeps 3 s before it answers; an answer first would be returned here, so
        # only a wait that the cancel ended raises "cancelled".
        with pytest.raises(RemoteError) as caught:
            call.result(cancel=cancel)
    finally:
        cancel.waited_on.set()  # the canceller ends even if nothing came to wait
        canceller.join()
        backend.close()
    assert caught.value.kind == "cancelled"


def test_a_dead_model_worker_is_caught_by_the_health_probe(
    repository: Path, models: dict[str, ModelFile]
) -> None:
    """Triton keeps a model whose worker died "ready"; only a request shows it."""
    with TritonServer(repository, load=["small"]) as server:
        cfg = RemoteConfig.parse(server.grpc_url, model_name="small")
        assert remote_health(cfg, models["small"])[0]
        (stub,) = server.stub_pids()
        kill_and_wait(stub)
        assert remote_health(cfg)[0]  # the server still says all is well
        assert remote_health(cfg, models["small"])[0]  # and so does its model's metadata
        ok, message = remote_health(cfg, models["small"], probe=True)
        assert not ok
        assert "returned an error" in message or "cannot be reached" in message, message


def test_tls_with_the_servers_certificate(
    repository: Path, models: dict[str, ModelFile], tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate (Debian package openssl)")
    key, cert = tmp_path / "server.key", tmp_path / "server.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    tls_args = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
    ]
    with TritonServer(repository, load=["small"], extra_args=tls_args) as server:
        trusted = RemoteConfig.parse(
            f"grpcs://{server.grpc_url}", model_name="small", ca_file=str(cert)
        )
        backend = TritonBackend(models["small"], trusted)
        try:
            assert backend.run(pixels(2)).shape == (2, SMALL, SMALL)
        finally:
            backend.close()
        # without our certificate authority the server is not trusted: refused, clearly
        untrusted = RemoteConfig.parse(f"grpcs://{server.grpc_url}", model_name="small")
        ok, message = remote_health(untrusted, models["small"])
        assert not ok and "cannot be reached" in message
        # and a plain-text client cannot talk to it
        plain = RemoteConfig.parse(server.grpc_url, model_name="small")
        assert not remote_health(plain, models["small"])[0]


def test_remote_config_parsing() -> None:
    assert RemoteConfig.parse("gpu-box:8001").describe() == "grpc://gpu-box:8001"
    assert RemoteConfig.parse("gpu-box").address == "gpu-box:8001"
    https = RemoteConfig.parse("https://triton.clinic.example/")
    assert (https.protocol, https.tls, https.address) == ("http", True, "triton.clinic.example:443")
    grpcs = RemoteConfig.parse("grpcs://10.0.0.5:9001", authorization="Bearer x")
    assert (grpcs.protocol, grpcs.tls) == ("grpc", True)
    assert "Bearer" not in repr(grpcs)  # secrets stay out of logs
    for bad in ("", "ftp://x:1", "host:99999", "host:port", "a/b:1"):
        with pytest.raises(ValueError):
            RemoteConfig.parse(bad)


def test_segmenter_opens_the_remote_backend_by_name(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    segmenter = Segmenter.open(models["small"].path, backend="triton", config=config(server))
    try:
        prediction = segmenter.predict(fundus_like(0))
        assert prediction.provenance.device == "triton"
        assert "Triton server" in prediction.provenance.device_reason
        assert segmenter.backend.run(pixels(11)).shape == (11, SMALL, SMALL)  # 8 + 3
    finally:
        segmenter.close()


def test_the_health_check_sends_no_inference(
    server: TritonServer, models: dict[str, ModelFile]
) -> None:
    """A status bar asks every 30 s: readiness, metadata and config only, never a photo."""
    before = server.statistics("small")
    for _ in range(3):
        ok, message = remote_health(config(server), models["small"])
        assert ok, message
    assert server.statistics("small") == before
    # an explicit probe does send one (so the count above would have seen it)
    ok, message = remote_health(config(server), models["small"], probe=True)
    assert ok and "answered in" in message
    assert server.statistics("small")["inference_count"] == before["inference_count"] + 1


class StatusError(Exception):
    """Shaped like tritonclient's InferenceServerException: status() and message()."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self._status, self._message = status, message

    def status(self) -> str:
        return self._status

    def message(self) -> str:
        return self._message


def test_remote_errors_are_classified_into_kinds() -> None:
    kind = RemoteErrorKind
    where = "the Triton server at grpc://gpu-box:8001"
    cases = [
        (StatusError("StatusCode.UNAVAILABLE", "exceeds maximum queue size"), kind.FULL),
        (StatusError("503", "busy"), kind.FULL),
        (StatusError("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"), kind.TIMEOUT),
        (TimeoutError("timed out"), kind.TIMEOUT),
        (StatusError("StatusCode.CANCELLED", "Cancelled"), kind.CANCELLED),
        (StatusError("StatusCode.UNAUTHENTICATED", "no"), kind.REFUSED),
        (StatusError("StatusCode.UNAVAILABLE", "failed to connect"), kind.UNREACHABLE),
        (ConnectionRefusedError("refused"), kind.UNREACHABLE),
        (StatusError("StatusCode.NOT_FOUND", "unknown model"), kind.REFUSED),
        (StatusError("StatusCode.INTERNAL", "Stub process is not healthy"), kind.FAILED),
    ]
    for exc, expected in cases:
        error = classify(exc, where, 2.0)
        assert error.kind is expected, (exc, error.kind)
        assert where in str(error)
    assert [k for k in kind if k.try_again_later] == [kind.FULL]  # only a full queue passes
    # the kind is an enum that still reads as its word, and only known words are kinds
    assert RemoteError("full", "x").kind is kind.FULL and kind.FULL == "full"
    with pytest.raises(ValueError):
        RemoteError("sometimes", "x")
