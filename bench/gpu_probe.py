"""One short GPU probe for a lent machine: the shipped network's throughput with torch on
CUDA at batch sizes 1-16 (the clinic's bar: 10 photos in under a second), and a training
step at the full-scale patch size. torch stands in for onnxruntime-gpu, whose wheel is too
large to carry to that machine; the network and input size are the shipped model's.

    python3 bench/gpu_probe.py [--working-size 1024]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.model import HemaviewNet, ModelConfig, PixelInputWrapper


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--working-size", type=int, default=1024)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    size = args.working_size
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    net = HemaviewNet(ModelConfig()).cuda().eval()
    model = PixelInputWrapper(net).cuda().eval()
    for dtype in (torch.float32, torch.bfloat16):
        for batch in (1, 2, 4, 8, 16):
            pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device="cuda")
            with (
                torch.no_grad(),
                torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32),
            ):
                s = timed(lambda p=pixels: model(p), 5)
            rate = batch / s
            print(
                f"inference {size}px {str(dtype)[6:]:8s} batch {batch:2d}: {rate:7.1f} photos/s, "
                f"10 photos in {10 / rate:.3f} s"
            )
    train = HemaviewNet(ModelConfig()).cuda().train()
    opt = torch.optim.AdamW(train.parameters(), lr=1e-3)
    x = torch.randn(16, 3, 384, 384, device="cuda")
    y = (torch.rand(16, 1, 384, 384, device="cuda") > 0.99).float()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, recon = train(x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
            if recon is not None:
                loss = loss + (recon.float() - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    s = timed(step, 20)
    print(
        f"training step (batch 16, 384px, bf16, both decoders): {1 / s:.1f} steps/s, "
        f"{16 / s:.0f} patches/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
