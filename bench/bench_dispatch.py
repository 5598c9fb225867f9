"""Dispatcher benchmark: its overhead, Triton's protocol cost, and local + remote together.

    scripts/triton-env                       # the server's environment, once
    .venv/bin/python bench/bench_dispatch.py [--model PATH] [--photos 8] [--repeats 3]
        [--working-size S] [--threads T] [--sections 1,2,3] [--local-batches 1,2,4,8,16]

Everything is measured in the same run, interleaved, and printed as ratios (machines are
noisy; only a ratio from one run can be compared):

1. photos/s through `Dispatcher` with no remote against the same photos through the local
   backend called directly (`Segmenter.predict_many`: read-ahead, model, post-processing,
   the same work without the dispatcher). Aim: overhead <= 5%.
2. photos/s through a real Triton server (the CPU stand-in of the same model, onnxruntime
   with the same thread count) against the model in-process, on the same preprocessed
   tensors: what the protocol costs (gRPC, uint8 on the wire, the Python backend).
3. With local and remote both working (a budget of ~0: both lanes take photos until the
   line is empty), photos/s against the sum of each alone. On one machine both share its
   cores, so the sum is an upper bound a separate server could reach, not this machine.

4. (`--sections 1,4`, e.g. on a GPU machine, no server needed) the local backend alone at
   the `--local-batches` sizes: CUDA where it binds.

`--working-size` benchmarks a twin of the model at another working size (same network,
re-stamped contract; needs the onnx package) for a quicker run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from triton_server import TritonServer, derive_model  # noqa: E402

from inference import Prediction, Segmenter  # noqa: E402
from inference.backends import Backend  # noqa: E402
from inference.backends.base import create_backend  # noqa: E402
from inference.backends.onnx_local import OnnxRuntimeBackend  # noqa: E402
from inference.dispatch import REMOTE_BACKEND, Dispatcher, RemoteConfig  # noqa: E402
from inference.model_file import ModelFile  # noqa: E402
from inference.system import physical_cores  # noqa: E402
from inference.triton_repo import RepoSettings, write_repository  # noqa: E402

# the IDRiD photos inside the repository (tests/data); --data takes any folder of them
DATA = REPO / "tests" / "data" / "idrid-hemorrhage" / "images"


#: CPU seconds per photo of this process (all its threads) in the last `rate` call: on a
#: machine shared with other work, what the dispatcher adds shows here more steadily than
#: in wall time
CPU_PER_PHOTO: dict[str, list[float]] = {}


def rate(count: int, fn: Callable[[], object], name: str = "") -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    CPU_PER_PHOTO.setdefault(name, []).append(cpu / count)
    return count / wall


def interleaved(
    repeats: int, count: int, named: dict[str, Callable[[], object]]
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(repeats):
        for name, fn in named.items():
            rates[name].append(rate(count, fn, name))
    return rates


def line(name: str, values: list[float]) -> str:
    return f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |"


def pair_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def consume(dispatcher: Dispatcher, photos: list[Path]) -> None:
    count = 0
    for item in dispatcher.run(photos):
        if not item.ok:
            raise SystemExit(f"{item.source}: {getattr(item.result, 'message', item.result)}")
        count += 1
    if count != len(photos):
        raise SystemExit(f"the dispatcher gave {count} results for {len(photos)} photos")


def run_direct(seg: Segmenter, photos: list[Path]) -> None:
    # results are dropped as they come, as consume() does: keeping full-size maps would
    # time the memory allocator, not the pipeline
    count = 0
    for source, result in seg.predict_many(photos):
        if not isinstance(result, Prediction):
            raise SystemExit(f"{source}: {result.message}")
        count += 1
    assert count == len(photos)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--working-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--local-batches", default="1,2,4,8,16")
    parser.add_argument(
        "--sections",
        default="1,2,3",
        help="which to run: 1 overhead, 2 protocol, 3 together (need scripts/triton-env), "
        "4 the local backend by batch size (e.g. on a GPU machine: --sections 1,4)",
    )
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    sections = {int(x) for x in args.sections.split(",") if x}

    photos = sorted(args.data.glob("IDRiD_*.jpg"))[: args.photos]
    if not photos:
        print(f"no IDRiD photos in {args.data}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
        return bench(args, sections, photos, Path(tmp))


def bench(args: argparse.Namespace, sections: set[int], photos: list[Path], scratch: Path) -> int:
    model_path = args.model or ModelFile.open().path
    if args.working_size:
        model_path = derive_model(model_path, scratch / "twin.onnx", working_size=args.working_size)
    seg = Segmenter.open(model_path, backend="local", threads=args.threads)
    model = seg.model
    size = model.contract.preprocess.working_size
    n = len(photos)
    print(f"model {model.name} {model.sha256[:12]}, working size {size}, {seg.device_reason}")
    print(f"{n} IDRiD photos x {args.repeats} repeats, {args.threads} threads, "
          f"{physical_cores()} physical cores\n")  # fmt: skip

    # warm-up: sessions, caches, the page cache for the photos
    run_direct(seg, photos[:2])

    local_only = Dispatcher(seg)
    tensors = np.stack([seg.prepare(p)[1].image for p in photos])
    if 1 in sections:
        overhead(args.repeats, seg, local_only, photos)
    if sections & {2, 3}:
        with_server(args, sections, seg, local_only, photos, tensors, scratch)
    if 4 in sections:
        by_batch(seg, tensors, [int(b) for b in args.local_batches.split(",")])
    seg.close()
    return 0


def overhead(repeats: int, seg: Segmenter, local_only: Dispatcher, photos: list[Path]) -> None:
    """1. photos/s through the dispatcher against the local backend called directly."""
    n = len(photos)
    rates = interleaved(
        repeats,
        n,
        {
            "local backend directly (predict_many)": lambda: run_direct(seg, photos),
            "Dispatcher, local only": lambda: consume(local_only, photos),
        },
    )
    direct, dispatched = rates.values()
    print("## 1. dispatch overhead, photos/s\n")
    print("| path | median | min | max |\n| --- | ---: | ---: | ---: |")
    for name, values in rates.items():
        print(line(name, values))
    ratio = pair_ratio(dispatched, direct)
    medians = statistics.median(dispatched) / statistics.median(direct)
    cpu_direct, cpu_dispatched = (statistics.median(CPU_PER_PHOTO[k]) for k in rates)
    print(
        f"\nDispatcher / direct: {ratio:.3f} per pair, {medians:.3f} of medians "
        f"(overhead {100 * (1 - ratio):+.1f}%; aim <= 5%)"
    )
    print(
        f"CPU seconds per photo (this process, all threads): direct {cpu_direct:.3f}, "
        f"Dispatcher {cpu_dispatched:.3f} ({100 * (cpu_dispatched / cpu_direct - 1):+.1f}%)\n"
    )


def with_server(
    args: argparse.Namespace,
    sections: set[int],
    seg: Segmenter,
    local_only: Dispatcher,
    photos: list[Path],
    tensors: np.ndarray,
    scratch: Path,
) -> None:
    """2. the protocol's cost on the same tensors and thread count; 3. both lanes at once."""
    n = len(photos)
    model = seg.model
    repo = scratch / "repo"
    write_repository(repo, model, cpu=True, settings=RepoSettings(intra_op_threads=args.threads))
    in_process = OnnxRuntimeBackend(model, device="cpu", threads=args.threads)
    with TritonServer(repo, log_path=scratch / "triton.log") as server:
        remote = RemoteConfig.parse(server.grpc_url, request_timeout_s=600)
        dispatch_remote = Dispatcher(seg, remote, budget_s=0)
        triton = create_backend(REMOTE_BACKEND, seg.source_model, config=remote)
        triton.run(tensors[:1])
        in_process.run(tensors[:1])

        def one_by_one(backend: Backend) -> Callable[[], object]:
            return lambda: [backend.run(tensors[i : i + 1]) for i in range(n)]

        if 2 in sections:
            protocol(args.repeats, n, one_by_one(in_process), one_by_one(triton))
        if 3 in sections:
            together(args.repeats, seg, local_only, dispatch_remote, remote, photos)
        triton.close()
        dispatch_remote.close()


def protocol(
    repeats: int, n: int, in_process: Callable[[], object], triton: Callable[[], object]
) -> None:
    """2. the model alone, in-process and through Triton, one photo per request."""
    rates2 = interleaved(
        repeats,
        n,
        {
            "onnxruntime in-process, batch 1": in_process,
            "Triton over gRPC, batch 1": triton,
        },
    )
    print("## 2. protocol cost (model only, preprocessed uint8 tensors), photos/s\n")
    print("| path | median | min | max |\n| --- | ---: | ---: | ---: |")
    for name, values in rates2.items():
        print(line(name, values))
    local_rates, triton_rates = rates2.values()
    proto = pair_ratio(triton_rates, local_rates)
    medians = statistics.median(triton_rates) / statistics.median(local_rates)
    per_photo_ms = 1e3 / statistics.median(triton_rates) - 1e3 / statistics.median(local_rates)
    print(
        f"\nTriton / in-process: {proto:.3f} per pair, {medians:.3f} of medians "
        f"({per_photo_ms:+.1f} ms per photo)\n"
    )


def together(
    repeats: int,
    seg: Segmenter,
    local_only: Dispatcher,
    dispatch_remote: Dispatcher,
    remote: RemoteConfig,
    photos: list[Path],
) -> None:
    """3. local and remote lanes at once, against each alone."""
    n = len(photos)
    both_lanes = Dispatcher(seg, remote, budget_s=1e-3)
    consume(both_lanes, photos[:2])
    rates3 = interleaved(
        repeats,
        n,
        {
            "local alone": lambda: consume(local_only, photos),
            "remote alone (budget 0)": lambda: consume(dispatch_remote, photos),
            "both (budget ~0)": lambda: consume(both_lanes, photos),
        },
    )
    print("## 3. local and remote together, photos/s (whole pipeline)\n")
    print("| path | median | min | max |\n| --- | ---: | ---: | ---: |")
    for name, values in rates3.items():
        print(line(name, values))
    alone_l, alone_r, both = rates3.values()
    pairs = list(zip(alone_l, alone_r, strict=True))
    sums, best = [a + b for a, b in pairs], [max(a, b) for a, b in pairs]
    report = both_lanes.last_report
    split = f" (last run: {report.local} here, {report.remote} remote)" if report else ""
    print(
        f"\nboth / (local alone + remote alone): {pair_ratio(both, sums):.3f}; "
        f"both / the faster alone: {pair_ratio(both, best):.3f}{split}"
    )
    if physical_cores() <= 4:
        print(
            "(server and local lane share this machine's cores here: the sum is what a "
            "separate server could add, not what this machine can)"
        )
    both_lanes.close()


def by_batch(seg: Segmenter, tensors: np.ndarray, batches: list[int]) -> None:
    """4. the local backend alone at several batch sizes (CUDA where it binds)."""
    print(f"\n## 4. local backend ({seg.device}) by batch size, photos/s (best of 3)\n")
    print("| batch | photos/s |\n| ---: | ---: |")
    for batch in batches:
        stack = np.concatenate([tensors] * (batch // len(tensors) + 1))[:batch]
        seg.backend.run(stack)
        best = max(rate(batch, lambda: seg.backend.run(stack)) for _ in range(3))  # noqa: B023
        print(f"| {batch} | {best:.2f} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
