"""A status bar's question, answered in one sentence: can photos go to this server now?"""

from __future__ import annotations

import threading
import time

import numpy as np

from inference.model_file import ModelFile
from inference.remote.config import RemoteConfig
from inference.remote.connection import Connection
from inference.remote.errors import RemoteError, RemoteErrorKind, classify
from inference.remote.served import check_served_model, served_name


def remote_health(
    config: RemoteConfig, model: ModelFile | None = None, *, probe: bool = False
) -> tuple[bool, str]:
    """(ok, one sentence for the user); never raises.

    Asks readiness and, with `model`, the served model's metadata and config, which must
    match it: no photo and no inference request, so a status bar may ask every few seconds.
    Without `model`, only the server and (if the config names one) the model's readiness
    count. `probe` also sends one blank image through the model, for a check a user asks
    for: a dead model worker leaves the model "ready" while every request fails, and only a
    request shows it.

    Takes up to the connect timeout (plus one request with `probe`): call it off the GUI
    thread.
    """
    t0 = time.perf_counter()
    connection = Connection(config)
    where = connection.where
    try:
        if model is None:
            if not connection.server_ready():
                return False, f"{where} is live but not ready"
            if config.model_name and not connection.model_ready(
                config.model_name, config.model_version
            ):
                return False, f"{where} has no ready model {config.model_name!r}"
            return True, f"{where} is ready"
        served = check_served_model(connection, model)
        if probe:
            _blank_request(connection, model)
    except Exception as exc:  # a status bar gets a sentence, never an exception
        timeout = config.request_timeout_s if probe else config.connect_timeout_s
        return False, str(classify(exc, where, timeout))
    finally:
        connection.close()
    answered = f", answered in {(time.perf_counter() - t0) * 1e3:.0f} ms" if probe else ""
    version = f" {served.model_version}" if served.model_version else ""
    return True, (
        f"{where} is ready: {served.name}{version} ({served.sha256[:12]}...) matches this "
        f"model{answered}"
    )


def _blank_request(connection: Connection, model: ModelFile) -> None:
    """One black image through the served model; RemoteError if it does not come back."""
    contract = model.contract
    size = contract.preprocess.working_size
    finished = threading.Event()
    outcome: list[RemoteError | None] = []

    def done(out: np.ndarray | None, error: RemoteError | None) -> None:
        if error is None and (out is None or out.shape != (1, 1, size, size)):
            got = None if out is None else out.shape
            error = RemoteError(
                RemoteErrorKind.FAILED,
                f"{connection.where} returned {got}, expected (1, 1, {size}, {size})",
            )
        outcome.append(error)
        finished.set()

    connection.infer(
        (served_name(connection.config, model), connection.config.model_version),
        contract.input_name,
        contract.output_name,
        np.zeros((1, size, size, 3), np.uint8),
        done,
    )
    finished.wait()  # the request's own deadline bounds this
    if outcome[0] is not None:
        raise outcome[0]
