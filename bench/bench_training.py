"""Training benchmark: is augmentation keeping up with the training step, and what INT8 buys.

    .venv/bin/python bench/bench_training.py [--model PATH] [--threads N] [--steps 3]

Three measurements, each a ratio of two rates taken in the same run (machines are noisy; a
ratio from one run is what can be compared), never an assertion:

1. Pretraining: `training.augment.moco_views` on photos held in memory as uint8 tensors
   (what `training.pretrain` does each step) against a MoCo v2 step (query and key encoders,
   InfoNCE, backward, SGD), in photos per second; the step in float32 and, where the CPU
   computes bfloat16 natively, in bfloat16 autocast with channels_last (as training runs it).
2. Fine-tuning: `training.patches.PatchSampler.batch` (lesion-biased patches cut by tensor
   slicing, then `augment_pair`) against a HemaviewNet step (forward, BCE + Dice +
   reconstruction loss, backward, AdamW), in photos (patches) per second; float32 against
   bfloat16 as above, and with `--compile` the faster one under torch.compile too.
   In both, data work and the step run in one process, as in training: data photos/s over
   step photos/s says whether the data side keeps up with the faster step.
3. Inference of an exported model on a real photo preprocessed at 1024 x 1024: fp32 against
   its INT8 quantisation (`training.quantize`, calibrated on real photos), through ONNX
   Runtime with the same thread count, runs interleaved.

Defaults are the reduced scale that `hemaview-train ship` uses on this 2-core CPU (working
size 512, 128-px crops; a MoCo batch of 16 instead of 32 to keep the run short), so it
finishes in a few minutes. `--model` defaults to resources/models/hemorrhage.onnx, else a
random-weight U-Net exported to a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.contract import PreprocessRecipe  # noqa: E402
from inference.model_file import ModelFile  # noqa: E402
from inference.preprocess import read_for_model  # noqa: E402
from inference.resources import shipped_model_path  # noqa: E402
from inference.system import physical_cores  # noqa: E402
from training.augment import moco_views  # noqa: E402
from training.configs import FinetuneConfig  # noqa: E402
from training.data import data_root, default_cache_dir, load_labelled_set  # noqa: E402
from training.losses import total_loss  # noqa: E402
from training.moco import MoCo, info_nce  # noqa: E402
from training.model import normalise  # noqa: E402
from training.patches import PatchSampler  # noqa: E402
from training.pretrain import auto_bn_splits, list_photos, load_pool  # noqa: E402
from training.runtime import autocast, cpu_bf16, memory_format, uses_bf16  # noqa: E402
from training.weights import build_net  # noqa: E402

# The training data where the pipeline finds it (HEMAVIEW_DATA), else the tests' own photos.
DATA = data_root() if data_root().is_dir() else REPO / "tests" / "data"
LABELLED = DATA / "idrid-hemorrhage"
UNLABELED = DATA / "idrid-unlabeled" if (DATA / "idrid-unlabeled").is_dir() else LABELLED
FINETUNE_PHOTOS = ["IDRiD_01", "IDRiD_02", "IDRiD_05", "IDRiD_17"]


#: The precisions a step is timed in: float32 always, bfloat16 where this CPU computes it.
PRECISIONS = ("fp32", "bf16")


def precisions(device: torch.device) -> list[str]:
    return [p for p in PRECISIONS if p == "fp32" or uses_bf16(device, True)]


def timed(fn: Callable[[], object], steps: int) -> list[float]:
    fn()  # untimed: allocator, kernel selection (and compilation, for torch.compile)
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def report(name: str, batch: int, data_s: list[float], steps: dict[str, list[float]]) -> None:
    """Data and step rates, and each precision's step against float32's."""
    data = statistics.median(data_s)
    step = {k: statistics.median(v) for k, v in steps.items()}
    print(f"\n{name}")
    print("| part | median s per batch | photos/s | speed-up over fp32 |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| data (sampling, augmentation) | {data:.3f} | {batch / data:.1f} | |")
    for k, v in step.items():
        print(f"| training step, {k} | {v:.3f} | {batch / v:.1f} | x{step['fp32'] / v:.2f} |")
    fastest = min(step, key=lambda k: step[k])
    ratio = step[fastest] / data
    print(
        f"data photos/s / step photos/s ({fastest}) = {ratio:.2f} (below 1: the data side is "
        f"the bottleneck); one after the other, data is "
        f"{data / (data + step[fastest]):.0%} of each iteration"
    )


def bench_pretrain(args: argparse.Namespace, recipe: PreprocessRecipe) -> None:
    photos = list_photos(UNLABELED, args.pool)
    images, fov = load_pool(photos, recipe, default_cache_dir(), workers=2)  # (P, 3, S, S) uint8
    batch = args.pretrain_batch
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    views: list[tuple[torch.Tensor, torch.Tensor]] = []

    def data() -> None:
        idx = torch.randint(0, len(images), (batch,), generator=generator)  # (n,)
        views[:] = [moco_views(images[idx], fov[idx], generator, args.crop)]  # (n, 3, c, c) x2

    data_s = timed(data, args.steps)
    steps: dict[str, list[float]] = {}
    for precision in precisions(device):
        bf16 = precision == "bf16"
        layout = memory_format(device, bf16)
        torch.manual_seed(0)
        model = MoCo(
            "resnet18", dim=128, queue_size=batch * 64, bn_splits=auto_bn_splits(batch)
        ).train()
        model = model.to(memory_format=layout)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=0.00375, momentum=0.9, weight_decay=1e-4)

        def step(
            model: MoCo = model,
            optimizer: torch.optim.Optimizer = optimizer,
            bf16: bool = bf16,
            layout: torch.memory_format = layout,
        ) -> None:
            im_q, im_k = (v.contiguous(memory_format=layout) for v in views[0])
            with autocast(device, bf16):
                output = model(im_q, im_k, generator=generator)
            loss = info_nce(output)  # logits in float32 inside MoCo whatever the autocast
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[precision] = timed(step, args.steps)
    report(
        f"pretraining (MoCo v2, resnet18): {len(images)} photos in memory at "
        f"{recipe.working_size} px, batch {batch}, crops {args.crop} px, {args.steps} steps; "
        f"{cpu_bf16()[1]}",
        batch,
        data_s,
        steps,
    )


def bench_finetune(args: argparse.Namespace, recipe: PreprocessRecipe) -> None:
    data = load_labelled_set(LABELLED, recipe, names=FINETUNE_PHOTOS)
    device = torch.device("cpu")
    config = FinetuneConfig(
        working_size=recipe.working_size,
        crop_size=args.crop,
        batch_size=args.finetune_batch,
        device="cpu",
        reconstruction=True,
    )
    sampler = PatchSampler(data.samples, config, device)
    weights = config.loss_weights()
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    held: list[tuple[torch.Tensor, ...]] = []

    def batch() -> None:
        held[:] = [sampler.batch(config.batch_size, rng, generator)]

    data_s = timed(batch, args.steps)
    variants = [(p, False) for p in precisions(device)]
    if args.compile:
        variants.append((variants[-1][0], True))
    steps: dict[str, list[float]] = {}
    for precision, compiled in variants:
        bf16 = precision == "bf16"
        layout = memory_format(device, bf16)
        net = build_net(config).train().to(memory_format=layout)
        optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
        forward: Callable[[torch.Tensor], Any] = torch.compile(net) if compiled else net
        t0 = time.perf_counter()

        def step(
            net: Any = net,
            forward: Any = forward,
            optimizer: Any = optimizer,
            bf16: bool = bf16,
            layout: torch.memory_format = layout,
        ) -> None:
            images, masks, valid, annotated = held[0]
            x = normalise(images, net.config).contiguous(memory_format=layout)  # (n, 3, c, c)
            with autocast(device, bf16):
                logits, recon = forward(x)
            loss, _ = total_loss(logits.float(), recon.float(), x, masks, valid, annotated, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        name = f"{precision} + torch.compile" if compiled else precision
        steps[name] = timed(step, args.steps)
        if compiled:
            first = time.perf_counter() - t0 - sum(steps[name])
            print(f"torch.compile: the first step (compilation) took {first:.0f} s")
    report(
        f"fine-tuning (U-Net resnet18 + reconstruction decoder): {len(data.samples)} photos at "
        f"{recipe.working_size} px, batch {config.batch_size}, crops {args.crop} px, "
        f"{args.steps} steps; {cpu_bf16()[1]}",
        config.batch_size,
        data_s,
        steps,
    )


def bench_inference(args: argparse.Namespace, tmp: Path) -> None:
    from inference.onnx_runtime import onnxruntime
    from training.quantize import pick_photos, quantize_model

    ort = onnxruntime()  # with its telemetry off, as the app has it

    model_path = args.model
    if model_path is None:
        shipped = shipped_model_path()
        if shipped.exists():
            model_path = shipped
        else:
            from training.export import export_model
            from training.model import HemaviewNet, ModelConfig

            torch.manual_seed(0)
            model_path = tmp / "random-unet.onnx"
            print("\nno shipped model: exporting a random-weight U-Net (timing only)")
            export_model(
                HemaviewNet(ModelConfig()).eval(),
                model_path,
                PreprocessRecipe(),
                check_parity=False,
            )
    fp32 = ModelFile.open(model_path)
    int8_path = tmp / "int8.onnx"
    calibration = pick_photos(LABELLED / "images", args.calibration_photos)
    t0 = time.perf_counter()
    quantize_model(model_path, int8_path, calibration)
    quantise_s = time.perf_counter() - t0
    int8 = ModelFile.open(int8_path)

    def session(model: ModelFile) -> Any:
        options = ort.SessionOptions()  # the CPU backend's settings
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(model.data, options, providers=["CPUExecutionProvider"])

    recipe = dataclasses.replace(fp32.contract.preprocess, working_size=args.size)
    _, prepared = read_for_model(LABELLED / "images" / "IDRiD_01.jpg", recipe)
    x = prepared.image[None]  # (1, size, size, 3) uint8
    runs = []
    for model in (fp32, int8):
        s = session(model)
        c = model.contract
        runs.append(lambda s=s, c=c: s.run([c.output_name], {c.input_name: x}))
    times: tuple[list[float], list[float]] = ([], [])
    for r in runs:
        r()  # warm-up
    for i in range(args.repeats):
        for k in (0, 1) if i % 2 == 0 else (1, 0):  # alternate who runs first
            t0 = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - t0)
    fp_ms, q_ms = (statistics.median(t) * 1e3 for t in times)
    print(
        f"\ninference at {args.size} x {args.size}, {args.threads} threads, "
        f"{args.repeats} runs each: {fp32.contract.model_name} {fp32.contract.model_version}"
    )
    print("| model | file MB | median ms |")
    print("| --- | ---: | ---: |")
    print(f"| fp32 | {len(fp32.data) / 2**20:.1f} | {fp_ms:.0f} |")
    print(
        f"| int8 (QDQ, {len(calibration)} calibration photos) | {len(int8.data) / 2**20:.1f} | "
        f"{q_ms:.0f} |"
    )
    print(
        f"int8 speed-up x{fp_ms / q_ms:.2f}, file {len(int8.data) / len(fp32.data):.2f} of fp32 "
        f"(quantising took {quantise_s:.0f} s); quality: `hemaview-train quantize`"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="an exported Hemaview model")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--working-size", type=int, default=512, help="training working size")
    parser.add_argument("--crop", type=int, default=128, help="training crop side")
    parser.add_argument("--pretrain-batch", type=int, default=16)
    parser.add_argument("--finetune-batch", type=int, default=8)
    parser.add_argument("--pool", type=int, default=16, help="unlabeled photos held in memory")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--size", type=int, default=1024, help="inference input side")
    parser.add_argument("--repeats", type=int, default=3, help="timed inference runs per model")
    parser.add_argument("--calibration-photos", type=int, default=2)
    parser.add_argument(
        "--compile", action="store_true", help="also time the step under torch.compile"
    )
    parser.add_argument(
        "--only", choices=("pretrain", "finetune", "inference"), action="append", default=None
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.only or ["pretrain", "finetune", "inference"]
    print(
        f"torch {torch.__version__}, {args.threads} threads (torch and ONNX Runtime); "
        f"{physical_cores()} physical cores"
    )
    recipe = PreprocessRecipe(working_size=args.working_size)
    t0 = time.perf_counter()
    if "pretrain" in parts:
        bench_pretrain(args, recipe)
    if "finetune" in parts:
        bench_finetune(args, recipe)
    if "inference" in parts:
        with tempfile.TemporaryDirectory(prefix="hemaview-bench-") as tmp:
            bench_inference(args, Path(tmp))
    print(f"\n(benchmark took {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
