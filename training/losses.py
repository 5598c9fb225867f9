"""Losses for lesions that cover about 0.5% of a photo, counted only where they mean something.

- BCE (or focal BCE) averaged over valid pixels only: outside the field of view the image is
  black and the label meaningless, and a photo without annotation (IDRiD_43) has no valid
  pixels at all for the segmentation terms.
- Soft Dice pooled over the whole batch: most crops hold no lesion, and a per-crop Dice is
  undefined or noisy there; pooling keeps it a measure of lesion overlap.
- Reconstruction: L1 between the reconstruction and the (normalised) input, inside the field
  of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LossWeights:
    bce: float = 1.0
    dice: float = 1.0
    focal_gamma: float = 0.0  # > 0 turns BCE into focal BCE
    reconstruction: float = 0.0  # 0: the reconstruction decoder is not trained


def masked_bce(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, focal_gamma: float = 0.0
) -> torch.Tensor:
    """Mean (focal) BCE over valid pixels; logits, target, valid (N, 1, H, W); target soft 0-1."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (N, 1, H, W)
    if focal_gamma > 0:
        p = torch.sigmoid(logits)
        p_true = p * target + (1 - p) * (1 - target)  # probability given to the label
        bce = bce * (1 - p_true).pow(focal_gamma)
    return (bce * valid).sum() / valid.sum().clamp_min(1.0)


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """1 - soft Dice pooled over the batch's valid pixels (N, 1, H, W)."""
    p = torch.sigmoid(logits) * valid
    t = target * valid
    intersection = (p * t).sum()
    return 1 - (2 * intersection + smooth) / (p.sum() + t.sum() + smooth)


def reconstruction_loss(
    recon: torch.Tensor, image: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Mean L1 over valid pixels and channels; recon, image (N, 3, H, W), valid (N, 1, H, W)."""
    error = (recon - image).abs() * valid  # (N, 3, H, W)
    return error.sum() / (valid.sum() * image.shape[1]).clamp_min(1.0)


def total_loss(
    logits: torch.Tensor,
    recon: torch.Tensor | None,
    image: torch.Tensor,
    target: torch.Tensor,
    fov: torch.Tensor,
    annotated: torch.Tensor,
    weights: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss and its parts (as floats, for the log).

    `fov` (N, 1, H, W) is the field of view; `annotated` (N,) is 1 for photos with a mask and 0
    for photos that only train the reconstruction (their segmentation terms count nothing).
    """
    logits = logits.float()
    seg_valid = fov * annotated.view(-1, 1, 1, 1).to(fov.dtype)  # (N, 1, H, W)
    bce = masked_bce(logits, target, seg_valid, weights.focal_gamma)
    dice = soft_dice_loss(logits, target, seg_valid)
    loss = weights.bce * bce + weights.dice * dice
    parts = {"bce": float(bce.detach()), "dice": float(dice.detach())}
    if recon is not None and weights.reconstruction > 0:
        rec = reconstruction_loss(recon.float(), image, fov)
        loss = loss + weights.reconstruction * rec
        parts["recon"] = float(rec.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts
