"""`hemaview --selftest`: what a clinic's IT checks after installing, in plain lines.

Prints the app and model versions, the model's SHA-256 check, which execution provider
bound and, if CUDA did not, the exact reason; then runs the shipped model on a bundled
sample photo. Exits non-zero on any failure.
"""

from __future__ import annotations

import sys
import time

from inference import (
    HemaviewError,
    Segmenter,
    __version__,
    bundled_cuda_status,
    is_photo_path,
    runtime_summary,
    sample_photos_dir,
    shipped_model_path,
)


def attach_console() -> None:
    """The Windows build's viewer is a GUI program with no console: print to the one it was
    started from (cmd, PowerShell), or to a new one, so `hemaview --selftest` can be read."""
    if sys.platform != "win32" or sys.stdout is not None:
        return
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    if not kernel32.AttachConsole(-1):  # -1: the parent process's console
        kernel32.AllocConsole()
    sys.stdout = open("CONOUT$", "w", encoding="utf-8", errors="replace")  # noqa: SIM115
    sys.stderr = sys.stdout


def run_selftest(model_path: str | None = None) -> int:
    attach_console()
    failures = 0

    def line(ok: bool, text: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        print(f"[{'ok' if ok else 'FAIL'}] {text}")

    print(f"Hemaview {__version__}, Python {sys.version.split()[0]}")
    try:
        print(runtime_summary())
    except ImportError as exc:
        line(False, f"onnxruntime cannot be imported: {exc}")
        return 1
    bundled = bundled_cuda_status()  # the GPU installer's build only
    if bundled is not None:
        line(" do not load" not in bundled, bundled)
    path = model_path or str(shipped_model_path())
    try:
        t0 = time.perf_counter()
        seg = Segmenter.open(model_path)
        c = seg.contract
        line(True, f"model {c.model_name} {c.model_version} at {path}")
        line(True, f"model file that runs: {seg.model_reason}")
        line(True, f"model SHA-256 verified: {c.sha256}")
        line(True, f"loaded in {time.perf_counter() - t0:.1f} s; {seg.device_reason}")
        if seg.device != "cuda":
            print(f"       the GPU is not used: {seg.device_reason.split(': ', 1)[-1]}")
    except HemaviewError as exc:
        line(False, f"model: {exc}")
        return 1
    samples = sorted(p for p in sample_photos_dir().glob("*") if is_photo_path(p))
    if not samples:
        line(False, f"no sample photo in {sample_photos_dir()}")
        return 1
    try:
        t0 = time.perf_counter()
        pred = seg.predict(samples[0])
        seconds = time.perf_counter() - t0
        ok = pred.probability.shape == (pred.photo.height, pred.photo.width)
        line(
            ok,
            f"{samples[0].name}: {len(pred.lesions)} suggested lesions in {seconds:.2f} s "
            f"on {pred.provenance.device}",
        )
    except HemaviewError as exc:
        line(False, f"{samples[0].name}: {exc}")
    print("selftest passed" if failures == 0 else f"selftest FAILED ({failures} problem(s))")
    return 0 if failures == 0 else 1
