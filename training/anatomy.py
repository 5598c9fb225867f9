"""The anatomy model: optic disc segmentation and fovea localisation on the preprocessed photo.

`hemaview-train anatomy --out DIR` cross-validates, fits on every photo and exports
(training.anatomy_export). Small on purpose, so the whole run fits a 2-core CPU in well
under an hour:
- the photo goes through the one preprocessing (inference.preprocess) at 256 px;
- an smp U-Net with a light encoder (random init, nothing downloaded) and two output
  channels: disc logits (sigmoid; BCE + soft Dice against the mask's per-pixel fraction)
  and fovea logits (softmax over all pixels: one distribution per photo; cross-entropy
  against a Gaussian of `fovea_sigma_dd` disc diameters on the marked centre, whose
  +-0.2 DD marking error it is wider than);
- augmentation: one affine map per photo (mirror, +-15 degrees, zoom, shift) applied to
  the image, the disc mask and the field of view together; the fovea's point moves by the
  same map analytically; modest brightness and contrast. A mirrored fundus is a plausible
  photo of the other eye, and the labels mirror with it.
Every fold's held-out maps are saved, so decoding settings (inference.anatomy.decode) can be
chosen after training without training again; the figures come from that same decoder.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as F

from inference.anatomy.decode import full_to_working
from inference.contract import PreprocessRecipe
from inference.labels import read_mask
from inference.preprocess import Geometry
from training.cache import load_preprocessed, mask_to_working
from training.data import data_root

OPTIC_DISC_NAME = "idrid-optic-disc"
FOVEA_CSV = "fovea_train.csv"


@dataclass
class AnatomyConfig:
    working_size: int = 256
    encoder: str = "timm-tf_efficientnet_lite0"
    decoder_channels: tuple[int, ...] = (64, 32, 24, 16, 8)
    steps: int = 250
    batch_size: int = 8
    lr: float = 0.002
    weight_decay: float = 0.0001
    warmup_steps: int = 20
    fovea_sigma_dd: float = 0.3
    fovea_weight: float = 0.2
    rotate_deg: float = 15.0
    zoom: tuple[float, ...] = (0.85, 1.2)
    shift: float = 0.06
    # a share of the photos blacked out past an edge between the fovea and the disc, so the
    # model sees photos without a disc (training.anatomy._disc_cut_off)
    hide_disc_p: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    seed: int = 0
    # one thread: on this 2-core machine shared with other runs, two threads made a step 4-7x
    # slower than one (1.5 s against 6-10 s at batch 6, measured)
    threads: int = 1
    # ImageNet statistics, applied inside the exported graph (as the haemorrhage model does)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def recipe(self) -> PreprocessRecipe:
        return PreprocessRecipe(
            working_size=self.working_size,
            mean=(self.mean[0], self.mean[1], self.mean[2]),
            std=(self.std[0], self.std[1], self.std[2]),
        )


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class AnatomySample:
    name: str
    image: np.ndarray  # (S, S, 3) uint8, the model's input
    geometry: Geometry
    disc: np.ndarray  # (S, S) float32, disc fraction per working pixel
    disc_center: tuple[float, float]  # full-res px: the mask's centroid
    disc_diameter: float  # full-res px: the mask's equivalent-circle diameter
    disc_box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the mask in full-res px
    disc_crop: np.ndarray  # bool, the full-res mask inside disc_box (for Dice)
    fovea: tuple[float, float]  # full-res px, approximate (fovea_train.csv)
    fovea_confidence: str  # high, medium, low: how clearly it could be seen
    image_path: Path

    @property
    def fovea_working(self) -> tuple[float, float]:
        return full_to_working(self.fovea, self.geometry)

    @property
    def disc_diameter_working(self) -> float:
        return self.disc_diameter * self.geometry.scale


def default_anatomy_dir() -> Path:
    return data_root() / OPTIC_DISC_NAME


def load_anatomy_set(
    data_dir: Path | None, photos_dir: Path | None, recipe: PreprocessRecipe, cache_dir: Path
) -> list[AnatomySample]:
    """The 54 photos with their disc masks and fovea centres, preprocessed as in the clinic."""
    data_dir = Path(data_dir) if data_dir else default_anatomy_dir()
    photos_dir = Path(photos_dir) if photos_dir else data_root() / "idrid-hemorrhage" / "images"
    table = data_dir / FOVEA_CSV
    if not table.is_file():
        raise FileNotFoundError(f"{table}: the fovea table is missing")
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    samples = []
    for row in rows:
        name = row["image"]
        photo = photos_dir / f"{name}.jpg"
        cached = load_preprocessed(photo, recipe, cache_dir)
        g = cached.geometry
        # palette PNG of {0, 1}: read as such (a greyscale conversion would lose the disc)
        full = read_mask(data_dir / "masks" / f"{name}_OD.png", (g.full_width, g.full_height))
        ys, xs = np.nonzero(full)
        if xs.size == 0:
            raise ValueError(f"{name}: the disc mask is empty")
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        samples.append(
            AnatomySample(
                name=name,
                image=cached.image,
                geometry=g,
                disc=np.clip(mask_to_working(full, g), 0.0, 1.0),
                disc_center=(float(xs.mean()), float(ys.mean())),
                disc_diameter=2 * math.sqrt(xs.size / math.pi),
                disc_box=box,
                disc_crop=full[box[1] : box[3], box[0] : box[2]].copy(),
                fovea=(float(row["fovea_x"]), float(row["fovea_y"])),
                fovea_confidence=row["confidence"],
                image_path=photo,
            )
        )
    return samples


def kfold_names(samples: list[AnatomySample], k: int, seed: int) -> list[list[str]]:
    """Photos into k folds, seeded, each fold with right and left eyes alike (ranked by the
    disc's horizontal place in the photo, dealt out in groups of k)."""
    ranked = sorted(samples, key=lambda s: (s.disc_center[0] / s.geometry.full_width, s.name))
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    for start in range(0, len(ranked), k):
        for sample, slot in zip(ranked[start : start + k], rng.permutation(k)):
            folds[int(slot)].append(sample.name)
    return [sorted(f) for f in folds]


# ----------------------------------------------------------------------------------------------
# Model


class AnatomyNet(nn.Module):
    """Normalised input (N, 3, H, W) -> logits (N, 2, H, W): channel 0 disc, 1 fovea."""

    def __init__(self, config: AnatomyConfig):
        super().__init__()
        self.unet = smp.Unet(
            encoder_name=config.encoder,
            encoder_weights=None,
            decoder_channels=tuple(config.decoder_channels),
            classes=2,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)  # (N, 2, H, W)


def maps_from_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2, H, W) logits -> disc probability (N, 1, H, W), fovea distribution (N, 1, H, W)."""
    n = logits.shape[0]
    disc = torch.sigmoid(logits[:, 0:1])  # (N, 1, H, W)
    fovea = torch.softmax(logits[:, 1].reshape(n, -1), dim=1).reshape_as(logits[:, 1:2])
    return disc, fovea


class AnatomyPixelWrapper(nn.Module):
    """What is exported: uint8 RGB (N, H, W, 3) -> disc (N, 1, H, W), fovea (N, 1, H, W).

    With `mirror`, the photo and its left-right mirror image go through as one batch and
    their maps are averaged (each mirrored back): the disc probability as a mean, the
    fovea as the mean of two distributions (still one distribution)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: AnatomyNet, config: AnatomyConfig, *, mirror: bool = False):
        super().__init__()
        self.net = net
        self.mirror = mirror
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (pixels.permute(0, 3, 1, 2).to(torch.float32) - self.mean) / self.std  # (N,3,H,W)
        if not self.mirror:
            return maps_from_logits(self.net(x))
        n = x.shape[0]
        disc, fovea = maps_from_logits(self.net(torch.cat([x, x.flip(3)], dim=0)))  # (2N,1,H,W)
        return (
            (disc[:n] + disc[n:].flip(3)) / 2,
            (fovea[:n] + fovea[n:].flip(3)) / 2,
        )


# ----------------------------------------------------------------------------------------------
# Augmentation and loss


def _normalised(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel index -> grid_sample's normalised coordinate (align_corners=False)."""
    return (2 * coord + 1) / size - 1


def augment_batch(
    samples: list[AnatomySample], config: AnatomyConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 3, S, S) normalised, disc targets (N, 1, S, S), fovea targets (N, S*S)
    summing to 1, and which fovea targets are usable (N,) bool."""
    n, size = len(samples), config.working_size
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float()
    disc = torch.from_numpy(np.stack([s.disc for s in samples]))[:, None]  # (N, 1, S, S)
    fov = torch.from_numpy(np.stack([s.geometry.fov_mask_working() for s in samples]))[:, None]
    stack = torch.cat([images, disc, fov.float()], dim=1)  # (N, 5, S, S)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)  # (N,)

    if config.hide_disc_p > 0:
        stack = stack * (1 - _disc_cut_off(samples, size, uniform(0, 1), config, g))

    angle = uniform(-config.rotate_deg, config.rotate_deg) * math.pi / 180
    zoom = torch.exp(uniform(math.log(config.zoom[0]), math.log(config.zoom[-1])))
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    shift = torch.stack([uniform(-config.shift, config.shift) for _ in range(2)], dim=1)  # (N,2)
    # in = A @ out + t, in grid_sample's normalised coordinates; A = R(angle) diag(flip, 1)/zoom
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    a = torch.stack(
        [torch.stack([cos * flip, -sin], 1), torch.stack([sin * flip, cos], 1)], 1
    )  # (N, 2, 2)
    theta = torch.cat([a, shift[:, :, None]], dim=2)  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, 5, size, size], align_corners=False)
    warped = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = (warped[:, 4:5] > 0.5).float()  # (N, 1, S, S)
    pixels = warped[:, :3]
    # photometric: brightness and contrast inside the field; the surround stays black
    bright = uniform(1 - config.brightness, 1 + config.brightness).view(n, 1, 1, 1)
    contrast = uniform(1 - config.contrast, 1 + config.contrast).view(n, 1, 1, 1)
    mean = (pixels * inside).sum((1, 2, 3), keepdim=True) / (3 * inside.sum((2, 3), True) + 1)
    pixels = ((pixels - mean) * contrast + mean) * bright
    pixels = pixels.clamp(0, 255) * inside
    mu = torch.tensor(config.mean).view(1, 3, 1, 1) * 255
    sd = torch.tensor(config.std).view(1, 3, 1, 1) * 255
    x = (pixels - mu) / sd  # (N, 3, S, S)
    # the fovea moves by the inverse map: out = A^-1 (in - t)
    fin = torch.tensor([s.fovea_working for s in samples], dtype=torch.float32)  # (N, 2) px
    fin_n = _normalised(fin, size)
    fout_n = torch.linalg.solve(a, (fin_n - shift)[:, :, None])[:, :, 0]  # (N, 2)
    fout = ((fout_n + 1) * size - 1) / 2  # pixel index
    usable = (fout >= 0).all(1) & (fout <= size - 1).all(1)
    sigma = (
        torch.tensor([s.disc_diameter_working * config.fovea_sigma_dd for s in samples]) * zoom
    )  # (N,) px in the output
    ys = torch.arange(size, dtype=torch.float32).view(1, size, 1)
    xs = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    d2 = (xs - fout[:, 0].view(n, 1, 1)) ** 2 + (ys - fout[:, 1].view(n, 1, 1)) ** 2
    target = torch.exp(-d2 / (2 * sigma.view(n, 1, 1) ** 2)).reshape(n, -1)  # (N, S*S)
    target = target / target.sum(1, keepdim=True).clamp_min(1e-12)
    return x, warped[:, 3:4].clamp(0, 1), target, usable


def _disc_cut_off(
    samples: list[AnatomySample],
    size: int,
    draw: torch.Tensor,
    config: AnatomyConfig,
    g: torch.Generator,
) -> torch.Tensor:
    """(N, 1, S, S) 1 where a photo is blacked out past a straight edge between its fovea
    and its disc, for a share `hide_disc_p` of the photos (0 elsewhere): the disc lies
    wholly outside what is left, as in a photo whose disc is out of the field, and its
    target goes with it. The model learns that what remains (exudates, bright reflexes)
    is not a disc."""
    n = len(samples)
    ys = torch.arange(size, dtype=torch.float32).view(1, size, 1)
    xs = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    fovea = torch.tensor([s.fovea_working for s in samples], dtype=torch.float32)  # (N, 2)
    disc = torch.tensor(
        [full_to_working(s.disc_center, s.geometry) for s in samples], dtype=torch.float32
    )  # (N, 2)
    dd = torch.tensor([s.disc_diameter_working for s in samples])  # (N,)
    towards = disc - fovea
    length = towards.norm(dim=1).clamp_min(1e-6)  # (N,)
    u = towards / length[:, None]  # (N, 2) unit vector, fovea to disc
    # the edge somewhere between 1 DD from the fovea and 0.6 DD short of the disc's centre
    lo, hi = dd, (length - 0.6 * dd).clamp_min(dd)
    edge = lo + (hi - lo) * torch.rand(n, generator=g)  # (N,)
    along = (xs - fovea[:, 0].view(n, 1, 1)) * u[:, 0].view(n, 1, 1) + (
        ys - fovea[:, 1].view(n, 1, 1)
    ) * u[:, 1].view(n, 1, 1)  # (N, S, S) distance along the fovea-disc axis
    beyond = (along > edge.view(n, 1, 1)).float()
    chosen = (draw < config.hide_disc_p).float().view(n, 1, 1)
    return (beyond * chosen)[:, None]  # (N, 1, S, S)


def anatomy_loss(
    logits: torch.Tensor,
    disc: torch.Tensor,
    fovea: torch.Tensor,
    usable: torch.Tensor,
    config: AnatomyConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE + soft Dice on the disc, cross-entropy of the fovea distribution; and the parts."""
    n = logits.shape[0]
    disc_logit = logits[:, 0:1]  # (N, 1, S, S)
    bce = F.binary_cross_entropy_with_logits(disc_logit, disc)
    p = torch.sigmoid(disc_logit)
    inter = (p * disc).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + disc.sum((1, 2, 3)) + 1)  # (N,)
    log_q = torch.log_softmax(logits[:, 1].reshape(n, -1), dim=1)  # (N, S*S)
    ce = -(fovea * log_q).sum(1)  # (N,)
    entropy = -(fovea * torch.log(fovea.clamp_min(1e-12))).sum(1)  # the CE's floor
    weight = usable.float()
    fovea_loss = (ce * weight).sum() / weight.sum().clamp_min(1)
    kl = ((ce - entropy) * weight).sum() / weight.sum().clamp_min(1)
    total = bce + dice.mean() + config.fovea_weight * fovea_loss
    return total, {"bce": bce.item(), "dice": dice.mean().item(), "fovea_kl": kl.item()}


# ----------------------------------------------------------------------------------------------
# Training and prediction


def train(
    config: AnatomyConfig, samples: list[AnatomySample], out: Path, *, log_every: int = 10
) -> AnatomyNet:
    """Train a fresh net on `samples`; resumes `out/checkpoint.pt`; returns the net."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    net = AnatomyNet(config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)
    step = 0
    checkpoint = out / "checkpoint.pt"
    names = [s.name for s in samples]
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["names"] != names or state["config"] != config.__dict__:
            raise ValueError(f"{checkpoint} belongs to another run (photos or settings differ)")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        g.set_state(state["rng"])
        step = int(state["step"])
    rng = np.random.default_rng(config.seed + step)
    log = (out / "train_log.csv").open("a")
    started = time.monotonic()
    net.train()
    while step < config.steps:
        lr = config.lr * min(1.0, (step + 1) / config.warmup_steps)
        lr *= 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [samples[int(i)] for i in rng.integers(0, len(samples), config.batch_size)]
        x, disc, fovea, usable = augment_batch(batch, config, g)
        loss, parts = anatomy_loss(net(x), disc, fovea, usable, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % log_every == 0 or step == config.steps:
            elapsed = time.monotonic() - started
            line = f"{step},{loss.item():.4f},{parts['bce']:.4f},{parts['dice']:.4f},"
            log.write(line + f"{parts['fovea_kl']:.4f},{lr:.6f},{elapsed:.0f}\n")
            log.flush()
        if step % 100 == 0 or step == config.steps:
            torch.save(
                {
                    "config": config.__dict__,
                    "names": names,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": g.get_state(),
                    "step": step,
                },
                checkpoint,
            )
    log.close()
    net.eval()
    return net


@torch.no_grad()
def predict_maps(
    net: AnatomyNet, config: AnatomyConfig, images: np.ndarray, *, mirror: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 -> disc (N, S, S), fovea (N, S, S) as float32, as the export does."""
    wrapper = AnatomyPixelWrapper(net, config, mirror=mirror).eval()
    disc, fovea = wrapper(torch.from_numpy(images))
    return disc[:, 0].numpy(), fovea[:, 0].numpy()


def net_from_checkpoint(path: Path) -> tuple[AnatomyNet, AnatomyConfig, dict[str, Any]]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    raw = dict(state["config"])
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    config = AnatomyConfig(**values)
    net = AnatomyNet(config)
    net.load_state_dict(state["model"])
    return net.eval(), config, state


def save_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n")
