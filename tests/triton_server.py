"""A real Triton Inference Server for the tests: the `tritonserver` binary from the
nvidia-pytriton wheel in its own environment (scripts/triton-env makes it), serving a
repository of CPU stand-in models on 127.0.0.1 and free ports.

The three set-up steps of shared/notes/triton-on-cpu.md are done here: a backend folder of
our own holding the Python backend and the 3.11 stub, LD_LIBRARY_PATH with the server
Python's LIBDIR and the wheel's libraries, and the environment's bin/ first on PATH.
Each server gets a unique shared-memory prefix so that its /dev/shm regions can be found
and removed even after it was killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ENV_DIR = Path(os.environ.get("HEMAVIEW_TRITON_ENV", REPO / ".venv-triton"))


class TritonUnavailable(RuntimeError):
    """The server environment is missing or the server did not come up (says why)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_python_facts(env_dir: Path) -> tuple[Path, str, str]:
    """(site-packages, LIBDIR, "3.11") of the server environment's Python."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        raise TritonUnavailable(
            f"no Triton server environment at {env_dir}: run scripts/triton-env"
        )
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import site, sys, sysconfig; print(site.getsitepackages()[0]); "
            "print(sysconfig.get_config_var('LIBDIR')); print('%d.%d' % sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return Path(out[0]), out[1], out[2]


def backend_dir(site_packages: Path, env_dir: Path, python_version: str) -> Path:
    """Our own backend folder with the Python backend and the stub for the server
    environment's Python (made once)."""
    target = env_dir / f"hemaview-triton-backends-{python_version}"
    python_dir = target / "python"
    root = site_packages / "pytriton" / "tritonserver"
    sources = [
        root / "backends" / "python" / "libtriton_python.so",
        root / "backends" / "python" / "triton_python_backend_utils.py",
        root / "python_backend_stubs" / python_version / "triton_python_backend_stub",
    ]
    if all((python_dir / s.name).exists() for s in sources):
        return target
    staging = env_dir / f".backends-{uuid.uuid4().hex[:8]}"
    (staging / "python").mkdir(parents=True)
    for source in sources:
        shutil.copy2(source, staging / "python" / source.name)
    try:
        staging.rename(target)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


class TritonServer:
    """One tritonserver process; use as a context manager or call start() and stop()."""

    def __init__(
        self,
        repository: Path,
        *,
        load: list[str] | None = None,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
        env_dir: Path = ENV_DIR,
    ):
        self.repository = Path(repository)
        self.load = load  # explicit model control: these at start, others by load_model()
        self.extra_args = extra_args or []
        self.env_dir = env_dir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.shm_prefix = f"hvtest{uuid.uuid4().hex[:10]}_"
        self.log_path = log_path or (self.repository.parent / f"triton-{self.grpc_port}.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        site_packages, libdir, version = _server_python_facts(self.env_dir)
        binary = site_packages / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        if not binary.exists():
            raise TritonUnavailable(f"no tritonserver binary at {binary}: run scripts/triton-env")
        args = [
            str(binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir(site_packages, self.env_dir, version)}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=3",
            "--log-verbose=0",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
        ]
        if self.load is not None:
            args.append("--model-control-mode=explicit")
            args += [f"--load-model={name}" for name in self.load]
        args += self.extra_args
        env = dict(os.environ)
        libs = [libdir, str(site_packages / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env["PATH"] = os.pathsep.join([str(self.env_dir / "bin"), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        return args, env

    def start(self, timeout_s: float = 60.0) -> TritonServer:
        args, env = self.command()
        log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the server's life)
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._cleanup_shm()
                raise TritonUnavailable(
                    f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise TritonUnavailable(f"tritonserver not ready after {timeout_s} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.http_url}/v2/health/ready", timeout=1.0
            ) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stub_pids(self) -> list[int]:
        """The Python backend's stub processes (one per model instance) under this server."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and b"triton_python_backend_stub" in cmdline:
                found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL the server and its stubs, as a crash or a pulled cable would."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._cleanup_shm()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process is not None:
            # stubs are in the server's session; none may outlive it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self._cleanup_shm()

    def _cleanup_shm(self) -> None:
        shm = Path("/dev/shm")
        if shm.is_dir():
            for region in shm.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- helpers the tests use to look at the server (through tritonclient, as a user would)

    def client(self) -> Any:
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.grpc_url)

    def load_model(self, name: str) -> None:
        with self.client() as client:
            client.load_model(name, client_timeout=60)

    def statistics(self, model: str, settle_s: float = 10.0) -> dict[str, int]:
        """inference_count and execution_count, read until two readings agree."""
        deadline = time.monotonic() + settle_s
        previous = None
        with self.client() as client:
            while True:
                stats = client.get_inference_statistics(model, as_json=True, client_timeout=5)
                entry = stats["model_stats"][0]
                reading = {
                    "inference_count": int(entry.get("inference_count", 0)),
                    "execution_count": int(entry.get("execution_count", 0)),
                }
                if reading == previous or time.monotonic() > deadline:
                    return reading
                previous = reading
                time.sleep(0.2)


def kill_and_wait(pid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL a process and return once it is dead (gone, or a zombie its parent has not
    reaped yet): the condition a test waits for, not a guessed sleep."""
    os.kill(pid, signal.SIGKILL)
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = next(
                (
                    line.split()[1]
                    for line in status.read_text().splitlines()
                    if line.startswith("State:")
                ),
                "",
            )
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} still alive {timeout_s} s after SIGKILL")


def derive_model(
    source: Path, target: Path, *, working_size: int | None = None, version: str | None = None
) -> Path:
    """The same network with another contract: a smaller working size (fast tests) or
    another version (so another SHA-256), re-stamped as export stamps it.

    The U-Net is fully convolutional with dynamic height and width, so only the metadata
    changes; this needs the onnx package (the training extra), as the export does.
    """
    import json

    import onnx

    from inference.contract import (
        KEY_MODEL_VERSION,
        KEY_PREPROCESS,
        KEY_SHA256,
        SHA256_PLACEHOLDER,
        stamp_sha256,
    )

    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == KEY_PREPROCESS and working_size is not None:
            recipe = json.loads(prop.value)
            recipe["working_size"] = working_size
            prop.value = json.dumps(recipe, sort_keys=True)
        elif prop.key == KEY_MODEL_VERSION and version is not None:
            prop.value = version
        elif prop.key == KEY_SHA256:
            prop.value = SHA256_PLACEHOLDER
    onnx.save(model, str(target))
    stamp_sha256(target)
    return target


@contextlib.contextmanager
def running(repository: Path, **options: Any) -> Iterator[TritonServer]:
    server = TritonServer(repository, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # a manual check: python tests/triton_server.py REPO
    with running(Path(sys.argv[1])) as s:
        print("ready on", s.grpc_url, s.http_url)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 2)
