"""Facts about the machine that set thread counts."""

from __future__ import annotations

import functools
import os
from pathlib import Path


@functools.cache
def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads do not help convolutions)."""
    logical = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    cores: set[tuple[str, str]] = set()
    try:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(logical)
        for cpu in cpus:
            topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(
                (
                    (topo / "physical_package_id").read_text().strip(),
                    (topo / "core_id").read_text().strip(),
                )
            )
    except OSError:
        return max(logical, 1)
    return max(min(len(cores), logical), 1)
