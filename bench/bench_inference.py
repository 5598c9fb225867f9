"""Inference benchmark: per-stage times and the overhead of Segmenter over a bare session.run.

    .venv/bin/python bench/bench_inference.py [--model PATH] [--photos N] [--repeats 3]

By default on every photo of tests/data/idrid-hemorrhage/images: eight full-size 4288x2848
IDRiD JPEGs as the clinic's camera writes them, from a sparse burden to the densest of the
set (IDRiD_17, 15% of its field haemorrhage). It prints, in milliseconds (medians), the time
to read, preprocess, run the model and post-process one photo, then the ratio of an
end-to-end `Segmenter.predict` (its lesions and full-resolution map made) to a bare
`session.run` on the same input tensor, measured interleaved in the same run (machines are
noisy; a ratio from one run is what can be compared). Then `predict_many` throughput, where
reading and post-processing overlap the model, against bare `session.run` over the same
tensors one after another, also interleaved, per repeat.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference import Segmenter  # noqa: E402
from inference.onnx_runtime import onnxruntime  # noqa: E402
from inference.system import physical_cores  # noqa: E402

# the IDRiD photos inside the repository (tests/data); --data takes any folder of them
DATA = REPO / "tests" / "data" / "idrid-hemorrhage" / "images"


def bare_session(model_data: bytes) -> Any:
    """The same session options Segmenter's CPU backend uses, with nothing around it."""
    ort = onnxruntime()  # with its telemetry off, as the app has it
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = physical_cores()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_data, options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--photos", type=int, default=0, help="the first N (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    photos = sorted(args.data.glob("IDRiD_*.jpg"))[: args.photos or None]
    if not photos:
        print(f"no IDRiD photos in {args.data}", file=sys.stderr)
        return 2
    seg = Segmenter.open(args.model, backend="cpu")
    session = bare_session(seg.model.data)
    name_in, name_out = seg.contract.input_name, seg.contract.output_name
    print(f"model {seg.contract.model_name} {seg.model.sha256[:12]}, {seg.device_reason}")
    print(
        f"{len(photos)} photos x {args.repeats} repeats, working size "
        f"{seg.contract.preprocess.working_size}, {physical_cores()} threads\n"
    )

    inputs = {p: seg.prepare(p)[1].image[None] for p in photos}
    session.run([name_out], {name_in: inputs[photos[0]]})  # warm-up both
    seg.predict(photos[0])

    bare: list[float] = []
    end_to_end: list[float] = []
    stages: dict[str, list[float]] = {"read": [], "preprocess": [], "model": [], "postprocess": []}
    for _ in range(args.repeats):
        for photo in photos:
            t0 = time.perf_counter()
            session.run([name_out], {name_in: inputs[photo]})
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            prediction = seg.predict(photo)
            end_to_end.append(time.perf_counter() - t0)
            for stage, ms in prediction.provenance.timings_ms.items():
                stages[stage].append(ms)

    print("| stage | median ms |")
    print("| --- | ---: |")
    for stage, values in stages.items():
        print(f"| {stage} | {statistics.median(values):.0f} |")
    e2e_ms, bare_ms = statistics.median(end_to_end) * 1e3, statistics.median(bare) * 1e3
    print(f"| Segmenter.predict end to end | {e2e_ms:.0f} |")
    print(f"| bare session.run, same tensor | {bare_ms:.0f} |")
    ratios = [e / b for e, b in zip(end_to_end, bare, strict=True)]
    print(
        f"\npredict / session.run: {e2e_ms / bare_ms:.3f} (ratio of medians); "
        f"per pair median {statistics.median(ratios):.3f} (aim: <= 1.3)"
    )

    # throughput: predict_many over all photos against the bare model over their tensors,
    # interleaved per repeat
    many_rates: list[float] = []
    bare_rates: list[float] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for photo in photos:
            session.run([name_out], {name_in: inputs[photo]})
        bare_rates.append(len(photos) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        ok = sum(1 for _, r in seg.predict_many(photos) if not hasattr(r, "message"))
        many_rates.append(ok / (time.perf_counter() - t0))
    many, bare_rate = statistics.median(many_rates), statistics.median(bare_rates)
    per_repeat = statistics.median(m / b for m, b in zip(many_rates, bare_rates, strict=True))
    print(
        f"predict_many: {many:.3f} photos/s against {bare_rate:.3f} for bare session.run "
        f"over the same tensors (ratio of medians {many / bare_rate:.3f}; per repeat median "
        f"{per_repeat:.3f}; aim: >= 0.7)"
    )
    seg.close()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
