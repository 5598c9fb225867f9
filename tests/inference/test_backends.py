"""Backends are named in a registry and imported when first asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference import ModelFile
from inference.backends import BACKENDS, backend_factory, create_backend, register_backend


@pytest.fixture(scope="module")
def model(model_path: Path) -> ModelFile:
    return ModelFile.open(model_path)


def test_backends_are_imported_only_when_asked_for(model: ModelFile) -> None:
    code = (
        "import json, sys; import inference.backends.base as base;"
        "loaded = lambda: sorted(m for m in ('inference.backends.onnx_local',"
        " 'inference.backends.triton_remote', 'tritonclient', 'onnxruntime') if m in sys.modules);"
        "first = loaded(); base.backend_factory('cpu'); local = loaded();"
        "base.backend_factory('triton'); print(json.dumps([first, local, loaded()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    before, local, remote = json.loads(out.strip().splitlines()[-1])
    assert before == []
    assert local == ["inference.backends.onnx_local"]  # the local one, and nothing remote
    # the remote backend's module; tritonclient waits for a connection
    assert remote == ["inference.backends.onnx_local", "inference.backends.triton_remote"]
    with pytest.raises(ValueError, match="unknown backend 'nope'; known: cpu, cuda, local"):
        create_backend("nope", model)


def test_a_backend_registered_by_name_is_built_from_its_module(
    model: ModelFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BACKENDS, "plain-cpu", "inference.backends.onnx_local:cpu_backend")
    backend = create_backend("plain-cpu", model, threads=1)
    assert backend.device == "cpu" and "1 threads" in backend.reason
    backend.close()
    with pytest.raises(ValueError, match="module:factory"):
        register_backend("broken", "inference.backends.onnx_local")
    monkeypatch.setitem(BACKENDS, "missing", "inference.backends.onnx_local:no_such_factory")
    with pytest.raises(AttributeError):
        backend_factory("missing")
