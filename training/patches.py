"""Fine-tuning's patches: lesion-biased crops cut from photos held on the training device.

Each photo (and its other-camera versions, `training.camera_data`) lives on the device as a
uint8 tensor; a batch is cut from them by slicing, centred on a lesion pixel at
`--lesion-bias`, else (at `--hard-negative-p`) on a past false alarm, else anywhere in the field
of view, and augmented on the same device (`training.augment.augment_pair`). The draws come
from the generators the caller passes, so a run resumed at an epoch boundary cuts what it
would have cut.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from training.augment import PAIR_AUGMENT, augment_pair
from training.camera_data import CameraVersion
from training.configs import FinetuneConfig
from training.data import Sample

# The patch handed to augment_pair is cut around a lesion with room to rotate; asking for
# crops almost wholly inside it keeps the lesion in the crop (augment_pair draws crop centres
# over the whole valid area it is given).
LESION_PATCH_AUGMENT = dataclasses.replace(PAIR_AUGMENT, min_inside=0.9)


def load_hard_negatives(config: FinetuneConfig) -> dict[str, list[list[int]]]:
    """--hard-negatives: {"working_size": S, "points": {photo: [[y, x], ...]}}; refused when
    mined at another working size than the run's."""
    if not config.hard_negatives:
        raise ValueError("--hard-negative-p needs --hard-negatives FILE")
    raw = json.loads(Path(config.hard_negatives).read_text())
    if int(raw["working_size"]) != config.recipe.working_size:
        raise ValueError(
            f"{config.hard_negatives}: hard negatives at working size {raw['working_size']}, "
            f"the run trains at {config.recipe.working_size}"
        )
    return dict(raw["points"])


class PatchSampler:
    """Lesion-biased patches cut from photos held on the training device; with hard negatives,
    some of the others centred on past false alarms."""

    def __init__(
        self,
        samples: Sequence[Sample],
        config: FinetuneConfig,
        device: torch.device,
        cameras: Mapping[str, Sequence[CameraVersion]] | None = None,
    ):
        use_unannotated = config.reconstruction and config.recon_weight > 0
        self.samples = [s for s in samples if s.annotated or use_unannotated]
        if not any(s.annotated for s in self.samples):
            raise ValueError("no annotated photo to train on")
        size = config.recipe.working_size
        for s in self.samples:
            if s.image.shape[:2] != (size, size):
                raise ValueError(
                    f"{s.name} is {s.image.shape[:2]}, not the configured working size {size}"
                )
        self.device = device
        self.crop = config.crop_size
        # Room around the patch for rotation and scaling, so augmentation does not pull black
        # corners in from outside it.
        self.context = (
            min(size, int(math.ceil(config.crop_size * 1.5 / 32) * 32))
            if config.augment
            else self.crop
        )
        self.lesion_bias = config.lesion_bias
        self.augment = config.augment
        self.augment_config = dataclasses.replace(LESION_PATCH_AUGMENT, shadow_p=config.shadow_p)
        self.camera_p = config.camera_p
        # Rows: each photo as taken, then its other-camera versions (cameras[name]).
        images: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        fovs: list[np.ndarray] = []
        annotated: list[float] = []
        self.rows: list[list[int]] = []
        empty = np.zeros((size, size), np.float32)
        for s in self.samples:
            versions = list((cameras or {}).get(s.name, ()))
            self.rows.append(list(range(len(images), len(images) + 1 + len(versions))))
            images += [s.image, *(v.image for v in versions)]
            masks += [s.mask if s.mask is not None else empty] + [
                v.mask if v.mask is not None else empty for v in versions
            ]
            fovs += [s.fov, *(v.fov for v in versions)]
            annotated += [float(s.annotated)] * (1 + len(versions))
        self.images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        self.images = self.images.contiguous().to(device)  # (R, 3, S, S) uint8
        self.masks = torch.from_numpy(np.stack(masks)[:, None]).to(device)  # (R, 1, S, S) float32
        self.fov = torch.from_numpy(np.stack(fovs)[:, None]).to(device)  # (R, 1, S, S) bool
        self.annotated = torch.tensor(annotated, device=device)  # (R,)
        # centres to draw from: lesion pixels, and field-of-view pixels on a coarse grid
        self.lesion_points = [
            np.argwhere(s.mask > 0.25) if s.mask is not None else np.zeros((0, 2), np.int64)
            for s in self.samples
        ]
        self.fov_points = [np.argwhere(s.fov[::4, ::4]) * 4 for s in self.samples]
        self.size = size
        # (y, x) working-pixel centres of false alarms to learn from, per photo (none: [])
        self.hard_p = config.hard_negative_p
        points = load_hard_negatives(config) if self.hard_p > 0 else {}
        self.hard_points = [
            np.asarray(points.get(s.name, np.zeros((0, 2))), np.int64).reshape(-1, 2)
            for s in self.samples
        ]

    def row(self, photo: int, rng: np.random.Generator) -> int:
        """The row a patch of `photo` is cut from: an other-camera version at camera_p."""
        rows = self.rows[photo]
        if len(rows) > 1 and rng.random() < self.camera_p:
            return rows[1 + int(rng.integers(len(rows) - 1))]
        return rows[0]

    def batch(
        self, n: int, rng: np.random.Generator, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patches: images (n, 3, c, c) float 0-255, masks (n, 1, c, c), valid (n, 1, c, c) and
        annotated (n,)."""
        photos = rng.integers(0, len(self.samples), n)
        half = self.context // 2
        images, masks, fov, rows = [], [], [], []
        for p in photos:
            row = self.row(int(p), rng)
            rows.append(row)
            points = self.lesion_points[p]
            if len(points) and rng.random() < self.lesion_bias:
                y, x = points[rng.integers(len(points))]
                # the lesion anywhere in the central part of the patch, not always dead centre
                y += int(rng.integers(-self.crop // 4, self.crop // 4 + 1))
                x += int(rng.integers(-self.crop // 4, self.crop // 4 + 1))
            elif self.hard_p > 0 and len(self.hard_points[p]) and rng.random() < self.hard_p:
                # a past false alarm, placed as the lesions are (the draws above are unchanged
                # when hard negatives are off, so such runs sample exactly as before)
                hard = self.hard_points[p]
                y, x = hard[rng.integers(len(hard))]
                y += int(rng.integers(-self.crop // 4, self.crop // 4 + 1))
                x += int(rng.integers(-self.crop // 4, self.crop // 4 + 1))
            else:
                grid = self.fov_points[p]
                y, x = grid[rng.integers(len(grid))]
            y0 = int(np.clip(y - half, 0, self.size - self.context))
            x0 = int(np.clip(x - half, 0, self.size - self.context))
            window = (slice(y0, y0 + self.context), slice(x0, x0 + self.context))
            images.append(self.images[row, :, window[0], window[1]])
            masks.append(self.masks[row, :, window[0], window[1]])
            fov.append(self.fov[row, :, window[0], window[1]])
        index = torch.as_tensor(rows, device=self.device)
        img = torch.stack(images).float()  # (n, 3, c, c) 0-255
        msk = torch.stack(masks)  # (n, 1, c, c)
        val = torch.stack(fov).float()  # (n, 1, c, c)
        if self.augment:
            img, msk, val = augment_pair(img, msk, val, generator, self.crop, self.augment_config)
        else:
            start = (self.context - self.crop) // 2
            crop = (
                slice(None),
                slice(None),
                slice(start, start + self.crop),
                slice(start, start + self.crop),
            )
            img, msk, val = img[crop], msk[crop], val[crop]
        return img, msk, val, self.annotated[index]
