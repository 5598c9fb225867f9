"""MoCo v2 pretraining of the U-Net's encoder on unlabeled fundus photos.

One process (CPU or one GPU) or many under torchrun: `torchrun --nproc_per_node 4 -m
training.cli pretrain --batch-size 128` spreads a global batch of 128 over 4 GPUs with
shuffling BN. The photos are preprocessed once through training.cache (the one preprocessing)
and held in memory as uint8 (on the GPU when it fits), so a step's data work is a gather and
the batched augmentations of training.augment, measured against the training step in the log.

Each epoch ends with a checkpoint (config, step, model with its queue, optimizer, RNG state);
rerunning with the same out dir resumes from it (`training.checkpoint`). The result is
`encoder.pt`: the query encoder's smp-encoder state dict, loaded into HemaviewNet by
`training.weights.load_encoder_weights`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from inference.contract import PreprocessRecipe
from inference.errors import NotFundusError
from training import checkpoint
from training.augment import MOCO_AUGMENT, AugmentConfig, moco_views
from training.cache import load_preprocessed
from training.checkpoint import PRETRAIN
from training.configs import (
    PretrainConfig,
    add_dataclass_args,
    dataclass_from_args,
    to_jsonable,
    upgrade_saved,
)
from training.data import list_photos
from training.moco import MoCo, info_nce, knn_top1, top1
from training.model import ModelConfig
from training.pretrain_log import LOG_FILE, Clock, StepLog
from training.provenance import pool_record
from training.runtime import autocast, memory_format, precision_note

CHECKPOINT = "checkpoint.pt"
ENCODER_FILE = "encoder.pt"


@dataclass
class _Runtime:
    rank: int
    world: int
    device: torch.device
    distributed: bool
    owns_group: bool


def _runtime(config: PretrainConfig) -> _Runtime:
    """Single process, or one of torchrun's (RANK / WORLD_SIZE / LOCAL_RANK in the environment)."""
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return _Runtime(0, 1, torch.device("cuda" if use_cuda else "cpu"), False, False)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cpu")
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Runtime(rank, world, device, True, owns)


def _barrier(rt: _Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def auto_bn_splits(batch: int) -> int:
    """The fewest BN groups (at least 2) that divide the batch with at most 32 photos each."""
    return next(s for s in range(max(2, math.ceil(batch / 32)), batch + 1) if batch % s == 0)


def load_pool(
    photos: list[Path],
    recipe: PreprocessRecipe,
    cache_dir: Path,
    workers: int,
    verbose: bool = False,
) -> tuple[Tensor, Tensor]:
    """Preprocess (or read from the cache) -> images (P, 3, S, S) uint8, FOV (P, 1, S, S) uint8."""
    size = recipe.working_size
    images = torch.empty((len(photos), 3, size, size), dtype=torch.uint8)
    fov = torch.empty((len(photos), 1, size, size), dtype=torch.uint8)
    usable = [True] * len(photos)
    done = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            item = load_preprocessed(photos[i], recipe, cache_dir)
        except NotFundusError as exc:
            print(f"skipping {photos[i].name}: {exc}", file=sys.stderr)
            usable[i] = False
            return
        images[i] = torch.from_numpy(item.image).permute(2, 0, 1)  # (3, S, S)
        fov[i, 0] = torch.from_numpy(item.fov)  # (S, S)
        with lock:
            done[0] += 1
            if verbose and done[0] % 50 == 0:
                print(f"preprocessed {done[0]}/{len(photos)} photos", flush=True)

    # cv2 releases the GIL while decoding and resizing, so threads do run in parallel.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, range(len(photos))))
    keep = torch.tensor(usable)
    if not keep.any():
        raise ValueError("none of the photos has a usable field of view")
    return images[keep], fov[keep]


class _Indices(torch.utils.data.Dataset[int]):
    """Photo indices, each photo `repeats` times per epoch (each time with fresh crops)."""

    def __init__(self, photos: int, repeats: int):
        self.photos, self.length = photos, photos * repeats

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> int:
        return i % self.photos


def cosine_lr(config: PretrainConfig, step: int, total: int) -> float:
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def pretrain(config: PretrainConfig) -> Path:
    """Train MoCo v2 as configured, resuming from OUT_DIR's checkpoint; return encoder.pt."""
    # Absolute paths in the recorded config: it must say where the data came from.
    config = replace(
        config,
        data_dir=str(Path(config.data_dir).resolve()),
        out_dir=str(Path(config.out_dir).resolve()),
        cache_dir=str(Path(config.cache_dir).resolve()) if config.cache_dir else None,
    )
    rt = _runtime(config)
    try:
        return _pretrain(config, rt)
    finally:
        if rt.owns_group:
            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, rt: _Runtime) -> Path:
    config.validate(rt.world)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = config.recipe
    lead = rt.rank == 0
    torch.manual_seed(config.seed)  # the same initial weights in every process
    images, fov = _photo_pool(config, rt, recipe)  # (P, 3, S, S), (P, 1, S, S) uint8
    model, optimizer, splits = _moco(config, rt)
    step, start_epoch = _resume(out / CHECKPOINT, config, model, optimizer, lead)
    net: nn.Module = model
    if rt.distributed:
        net = DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    sampler, loader = _batches(len(images), config, rt)
    total = len(loader) * config.epochs
    views = _Views(config, rt.device)
    if lead:
        print(
            f"MoCo v2 {config.encoder}: {len(images)} photos at {config.recipe.working_size} px, "
            f"crops {config.crop_size} px, batch {config.batch_size} over {rt.world} process(es) "
            f"on {rt.device}, BN groups per process {splits}, {len(loader)} steps/epoch, "
            f"negatives from the {config.negatives}, {config.optimizer}; "
            f"{precision_note(rt.device, config.amp)}",
            flush=True,
        )
        note = queue_note(config.queue_size, len(images)) if config.negatives == "queue" else ""
        if note:
            print(note, flush=True)
    clock = Clock(config.batch_size)
    net.train()
    with StepLog(out / LOG_FILE, step, config, total, lead) as step_log:
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            # Crops and shuffles come from (seed, epoch, rank): a resumed run redraws the same ones.
            generator = torch.Generator().manual_seed(
                config.seed * 1_000_003 + epoch * 1_009 + rt.rank
            )
            t0 = time.perf_counter()
            for batch_idx in loader:
                im_q, im_k = views(batch_idx, images, fov, generator)  # (n, 3, c, c) each
                _sync(rt.device)
                t1 = time.perf_counter()
                lr = cosine_lr(config, step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, acc = _train_step(net, optimizer, im_q, im_k, generator, rt, config.amp)
                t2 = time.perf_counter()
                step += 1
                if not math.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at step {step}")
                clock.add(t1 - t0, t2 - t1)
                step_log.row(step, epoch, loss, acc, lr, clock)
                t0 = time.perf_counter()
            if lead:
                _save_checkpoint(out / CHECKPOINT, config, rt, step, epoch, model, optimizer)
            _barrier(rt)
    if lead and clock.steps:
        print(clock.summary(), flush=True)
    path = out / ENCODER_FILE
    if lead:
        photos = list_photos(Path(config.data_dir), config.max_photos)
        pool = pool_record(Path(config.data_dir), photos, len(images))
        _save_encoder(path, config, model, step, pool)
        if config.knn_photos:
            count = min(config.knn_photos, len(images))
            accuracy, chance = held_apart_knn(model, images[:count], fov[:count], config)
            print(
                f"held-apart views of {count} photos: nearest-neighbour top-1 {accuracy:.3f} "
                f"(chance {chance:.3f}) on the encoder's pooled features",
                flush=True,
            )
    _barrier(rt)
    return path


@torch.no_grad()
def held_apart_knn(
    model: MoCo,
    images: Tensor,
    fov: Tensor,
    config: PretrainConfig,
    views: int = 2,
    augment: AugmentConfig = MOCO_AUGMENT,
) -> tuple[float, float]:
    """Does the encoder tell photos apart? `views` fresh views of each photo, drawn from a
    generator training never used, through the query encoder in eval mode (its pooled deepest
    features: what fine-tuning inherits, not the projection head); the leave-one-out
    nearest-neighbour top-1 (`training.moco.knn_top1`) and its chance level."""
    generator = torch.Generator().manual_seed(2**31 - 1 - config.seed)
    encoder = model.encoder_q.encoder
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    features, ids = [], []
    try:
        for _ in range(views):
            for start in range(0, images.shape[0], 32):
                part = slice(start, start + 32)
                view, _ = moco_views(images[part], fov[part], generator, config.crop_size, augment)
                deepest = encoder(view.to(device))[-1]  # (n, C, h, w)
                features.append(deepest.float().mean(dim=(2, 3)).cpu())  # (n, C)
                ids.append(torch.arange(start, start + view.shape[0]))
    finally:
        encoder.train(was_training)
    n = images.shape[0]
    chance = (views - 1) / (views * n - 1)
    return knn_top1(torch.cat(features), torch.cat(ids)), chance


def _photo_pool(
    config: PretrainConfig, rt: _Runtime, recipe: PreprocessRecipe
) -> tuple[Tensor, Tensor]:
    """The photos, preprocessed, where the steps read them: (P, 3, S, S), (P, 1, S, S) uint8."""
    photos = list_photos(Path(config.data_dir), config.max_photos)
    cache_dir = Path(config.cache_dir) if config.cache_dir else Path(config.out_dir) / "cache"
    lead = rt.rank == 0
    if lead:  # one process fills the cache, the others then read it
        images, fov = load_pool(photos, recipe, cache_dir, config.workers, verbose=True)
    _barrier(rt)
    if not lead:
        images, fov = load_pool(photos, recipe, cache_dir, config.workers)
    pool_device = rt.device if config.data_on_device else torch.device("cpu")
    return images.to(pool_device), fov.to(pool_device)


def queue_note(queue_size: int, photos: int) -> str:
    """A warning when the queue of negatives holds several keys of each photo, else "".

    MoCo's queue assumes far more photos than keys: with a small pool the same photo's
    earlier views sit in the queue as negatives, which caps top-1 near zero and pushes
    apart views that should match."""
    if queue_size < photos:
        return ""
    return (
        f"note: the queue of {queue_size} negatives holds about {queue_size / photos:.0f} keys "
        f"of each of the {photos} photos, so a photo's earlier views count as negatives; "
        f"--queue-size below {photos} (a multiple of the batch) avoids that"
    )


def _moco(config: PretrainConfig, rt: _Runtime) -> tuple[MoCo, torch.optim.Optimizer, int]:
    """The MoCo model (seeded by the caller), its SGD optimiser and its BN groups per process."""
    local_batch = config.batch_size // rt.world
    splits = config.bn_splits or (1 if rt.world > 1 else auto_bn_splits(local_batch))
    model = MoCo(
        config.encoder,
        config.dim,
        config.queue_size,
        config.momentum,
        config.temperature,
        splits,
        negatives=config.negatives,
    ).to(rt.device)
    model = model.to(memory_format=memory_format(rt.device, config.amp))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.sgd_momentum, weight_decay=config.weight_decay
        )
    return model, optimizer, splits


def _resume(
    path: Path,
    config: PretrainConfig,
    model: MoCo,
    optimizer: torch.optim.Optimizer,
    lead: bool,
) -> tuple[int, int]:
    """Load the checkpoint at `path` when there is one; the step and the epoch to start from."""
    if not path.exists():
        return 0, 0
    state = checkpoint.load(path, PRETRAIN)
    # a setting the checkpoint does not name came after it, and its default is how that older
    # code ran (negatives from the queue)
    state["config"] = {**to_jsonable(PretrainConfig()), **upgrade_saved(state["config"])}
    checkpoint.refuse_other_run(path, state, to_jsonable(config), PRETRAIN)
    model.load_state_dict(state["model"])  # strict: the same MoCo, queue included
    optimizer.load_state_dict(state["optimizer"])
    # the DataLoader seeds each epoch's shuffle from torch's global generator
    torch.set_rng_state(state["rng"]["torch"])
    step, epoch = int(state["step"]), int(state["epoch"]) + 1
    if lead:
        print(f"resuming from {path}: epoch {epoch}, step {step}", flush=True)
    return step, epoch


def _batches(
    photos: int, config: PretrainConfig, rt: _Runtime
) -> tuple[DistributedSampler[int], DataLoader[int]]:
    """Batches of photo indices for this process: every photo `repeats` times per epoch."""
    sampler: DistributedSampler[int] = DistributedSampler(
        _Indices(photos, config.repeats),
        num_replicas=rt.world,
        rank=rt.rank,
        shuffle=True,
        seed=config.seed,
        drop_last=True,
    )
    loader = DataLoader(
        _Indices(photos, config.repeats),
        batch_size=config.batch_size // rt.world,
        sampler=sampler,
        drop_last=True,
    )
    if len(loader) == 0:
        raise ValueError(
            f"{photos} photos x {config.repeats} repeats make no batch of {config.batch_size}"
        )
    return sampler, loader


class _Views:
    """A batch of photo indices -> the two augmented views of each, on the training device."""

    def __init__(self, config: PretrainConfig, device: torch.device):
        self.device, self.crop = device, config.crop_size
        self.layout = memory_format(device, config.amp)
        scale = (float(config.crop_scale[0]), float(config.crop_scale[1]))
        self.augment = replace(MOCO_AUGMENT, scale=scale)
        self.model_config = ModelConfig(encoder=config.encoder)

    def __call__(
        self, batch_idx: Tensor, images: Tensor, fov: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        idx = batch_idx.to(images.device)  # (n,)
        batch_images = images[idx].to(self.device, non_blocking=True)  # (n, 3, S, S) uint8
        batch_fov = fov[idx].to(self.device, non_blocking=True)  # (n, 1, S, S) uint8
        im_q, im_k = moco_views(
            batch_images, batch_fov, generator, self.crop, self.augment, self.model_config
        )  # (n, 3, c, c) each
        im_q = im_q.contiguous(memory_format=self.layout)
        im_k = im_k.contiguous(memory_format=self.layout)
        return im_q, im_k


def _train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    im_q: Tensor,
    im_k: Tensor,
    generator: torch.Generator,
    rt: _Runtime,
    amp: bool,
) -> tuple[float, float]:
    """Forward under autocast (InfoNCE in float32), backward, an SGD step; loss and top-1,
    averaged over the processes."""
    with autocast(rt.device, amp):
        output = net(im_q, im_k, generator=generator)
    loss = info_nce(output)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    stats = torch.stack([loss.detach(), top1(output)])  # (2,)
    if rt.distributed:
        dist.all_reduce(stats)
        stats /= rt.world
    loss_value, acc = stats.tolist()
    return loss_value, acc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save_checkpoint(
    path: Path,
    config: PretrainConfig,
    rt: _Runtime,
    step: int,
    epoch: int,
    model: MoCo,
    optimizer: torch.optim.Optimizer,
) -> None:
    """checkpoint.pt after an epoch (training.checkpoint.PRETRAIN)."""
    checkpoint.save(
        path,
        {
            "config": to_jsonable(config),
            "recipe": config.recipe.to_json(),
            "step": step,
            "epoch": epoch,
            "world_size": rt.world,
            "model": model.state_dict(),  # holds the queue and its pointer as buffers
            "optimizer": optimizer.state_dict(),
            # torch's generator seeds the DataLoader's shuffles; the augmentation's own generator
            # needs no saving, as each epoch seeds it afresh from (seed, epoch, rank)
            "rng": {"torch": torch.get_rng_state()},
        },
    )


def _save_encoder(
    path: Path, config: PretrainConfig, model: MoCo, step: int, pool: dict[str, Any]
) -> None:
    """encoder.pt: the query encoder's smp state dict, for training.weights.load_encoder_weights,
    and the pool it learned from (training.provenance.pool_record), for the model's records."""
    checkpoint.save(
        path,
        {
            "encoder": {
                k: v.detach().cpu() for k, v in model.encoder_q.encoder.state_dict().items()
            },
            "config": to_jsonable(config),
            "encoder_name": config.encoder,
            "recipe": config.recipe.to_json(),
            "step": step,
            "pool": pool,
        },
    )
    print(f"wrote {path}", flush=True)


def pretrain_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hemaview-train pretrain", description="MoCo v2 pretraining of the encoder"
    )
    add_dataclass_args(parser, PretrainConfig)
    config = dataclass_from_args(PretrainConfig, parser.parse_args(argv))
    path = pretrain(config)
    if int(os.environ.get("RANK", 0)) == 0:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(pretrain_main(sys.argv[1:]))
