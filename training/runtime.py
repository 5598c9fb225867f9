"""Where training runs and in what precision (the device, bfloat16 autocast, memory format),
and how it reports its progress (bars, durations).

bfloat16 autocast pays on CUDA and on CPUs with bfloat16 units (AMX-BF16 or AVX512-BF16,
Sapphire Rapids and later): measured on this project's CPU, one U-Net training step ran 2.1
to 3 times faster with autocast and channels_last than in float32. A CPU without them
emulates bfloat16 and runs slower than float32, so there autocast stays off and the run says
why. Losses and MoCo's similarity logits stay in float32 whatever the autocast.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


@functools.cache
def cpu_bf16_units() -> tuple[str, ...]:
    """The bfloat16 units this CPU has (AMX, AVX512-BF16), as torch or the kernel reports them."""
    found = []
    cpu = torch.cpu
    for name, probe in (
        ("AMX", "_is_amx_tile_supported"),
        ("AVX512-BF16", "_is_avx512_bf16_supported"),
    ):
        check = getattr(cpu, probe, None)
        if check is not None and check():
            found.append(name)
    if not found:  # older torch: the kernel's own flags
        with contextlib.suppress(OSError):
            flags = set(Path("/proc/cpuinfo").read_text().split())
            found = [
                n
                for n, f in (("AMX-BF16", "amx_bf16"), ("AVX512-BF16", "avx512_bf16"))
                if f in flags
            ]
    return tuple(found)


def cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bfloat16 natively, and what was found (for logs and cards)."""
    found = cpu_bf16_units()
    if found:
        return True, f"bfloat16 autocast on the CPU ({' and '.join(found)})"
    return False, (
        "float32 on the CPU: it has neither AMX-BF16 nor AVX512-BF16, where bfloat16 would be "
        "emulated and slower"
    )


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (Linux), else what Python knows: timings mean little without it
    (an AMX Xeon trains this U-Net in bfloat16 about a third faster than an AVX512-BF16 EPYC)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def uses_bf16(device: torch.device, wanted: bool) -> bool:
    """Autocast to bfloat16 on this device, when asked for and when it pays."""
    if not wanted:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_bf16()[0]


def precision_note(device: torch.device, wanted: bool) -> str:
    if not wanted:
        return "float32 (bfloat16 turned off)"
    if device.type == "cuda":
        return "bfloat16 autocast on CUDA"
    return cpu_bf16()[1]


def autocast(device: torch.device, bf16: bool) -> Any:
    """bfloat16 autocast where `uses_bf16` says so, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, bf16))


def memory_format(device: torch.device, bf16: bool) -> torch.memory_format:
    """channels_last with bfloat16 (oneDNN's and cuDNN's fast layout), else the default."""
    return torch.channels_last if uses_bf16(device, bf16) else torch.contiguous_format


def format_duration(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress(
    total: int | None, unit: str, label: str, *, stream: TextIO | None = None, done: int = 0
) -> Any:
    """A tqdm bar on `stream` (stderr): redrawn in place on a terminal; elsewhere (a log file,
    a pipe) a line of its own every few seconds, so a log reads as a history of the run."""
    stream = stream or sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(
        total=total,
        initial=done,
        unit=unit,
        desc=label,
        file=stream if tty else _Lines(stream),
        mininterval=0.5 if tty else 5.0,
        dynamic_ncols=tty,
    )


def reporter(bar: Any) -> Callable[[int, int], None]:
    """The `progress(done, total)` callback that evaluation and data loading call, moving `bar`."""

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return report


class _Lines:
    """tqdm redraws its line with a carriage return, which a log file keeps as one line that
    grows for hours; off a terminal each redraw becomes a line of its own."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()
