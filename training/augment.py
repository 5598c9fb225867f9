"""Batched fundus augmentations on torch tensors, on whatever device the images live on.

Every random number is drawn on the generator's device (normally the CPU, a few numbers per
photo) and moved to the images' device, so a seed gives the same crops on CPU and GPU (the
pixels agree to float16 rounding, the GPU's working precision) and the pixel work never
leaves the accelerator.

Geometry is one affine map per photo (random resized crop, any rotation, a mirror flip),
applied with one grid_sample to the image and its masks stacked as channels, so they cannot
drift apart. Crops are drawn from the field of view (FOV): several candidates per photo,
keeping the first that lies mostly inside it. Fundus photos have no canonical "up",
hence rotation by any angle; colour changes stay modest, because a haemorrhage is told from
a vessel or a shadow largely by its hue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from training.model import ModelConfig, normalise

_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    # geometry
    scale: tuple[float, float] = (0.2, 1.0)  # crop area as a fraction of the FOV's area
    zoom: tuple[float, float] | None = None  # output px per source px (log-uniform); replaces scale
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio (log-uniform)
    rotate: bool = True  # any angle
    flip: bool = True  # mirror with p = 0.5 (with free rotation one flip axis is enough)
    min_inside: float = 0.8  # fraction of the crop that must lie in the FOV (or valid area)
    candidates: int = 16  # crops tried per photo; the best one is kept when none is inside enough
    # Shrinking crops sample a 2^L-averaged copy of the photo, then 2 x 2 points per pixel.
    antialias: bool = True
    # photometric (images only)
    jitter_p: float = 0.8
    brightness: float = 0.25  # factor in [1 - b, 1 + b]
    contrast: float = 0.25
    saturation: float = 0.2
    hue: float = 0.02  # fraction of a full turn of the colour wheel, in YIQ space
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # output pixels
    # a large smooth shadow (uneven illumination): the fraction of photos given one; 0 draws
    # nothing, so a config without shadows augments exactly as before they existed
    shadow_p: float = 0.0
    shadow_depth: tuple[float, float] = (0.3, 0.7)  # darkest point's loss of brightness
    shadow_sigma: tuple[float, float] = (0.5, 1.5)  # Gaussian width, in crop sides


#: MoCo v2's recipe (crop scale 0.2-1, jitter p 0.8, blur p 0.5), colours toned down for fundus.
MOCO_AUGMENT = AugmentConfig()
#: Segmentation crops stay near native resolution: a haemorrhage must not shrink to a dot.
PAIR_AUGMENT = AugmentConfig(
    zoom=(0.8, 1.25),
    ratio=(0.9, 1.1),
    min_inside=0.5,
    brightness=0.15,
    contrast=0.15,
    saturation=0.1,
    hue=0.01,
    blur_p=0.2,
    blur_sigma=(0.1, 1.0),
)


def as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A torch.Generator from a generator, a seed, or None (a fresh nondeterministic seed)."""
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator()
    if generator is None:
        g.seed()
    else:
        g.manual_seed(int(generator))
    return g


def _uniform(
    g: torch.Generator, shape: tuple[int, ...], low: float, high: float, device: torch.device
) -> Tensor:
    return (torch.rand(shape, generator=g, device=g.device) * (high - low) + low).to(device)


def _centroids(region: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centre x, y (pixels) and area of each region (N, 1, H, W); the whole image if empty.

    Read on a grid of every k-th pixel (k = side / 256): a centre to a few pixels is enough to
    aim crops, and a full-resolution reduction cost more than the sampling itself.
    """
    height, width = region.shape[2:]
    k = max(1, min(height, width) // 256)
    sub = region[:, :, ::k, ::k]  # (N, 1, H/k, W/k) strided view
    columns = sub.sum(dim=(1, 2), dtype=torch.float32)  # (N, W/k)
    rows = sub.sum(dim=(1, 3), dtype=torch.float32)  # (N, H/k)
    area = columns.sum(dim=1) * k * k  # (N,)
    xs = torch.arange(0, width, k, device=region.device, dtype=torch.float32) + 0.5  # (W/k,)
    ys = torch.arange(0, height, k, device=region.device, dtype=torch.float32) + 0.5  # (H/k,)
    cx = (columns * xs).sum(dim=1) / columns.sum(dim=1).clamp_min(1e-6)  # (N,)
    cy = (rows * ys).sum(dim=1) / rows.sum(dim=1).clamp_min(1e-6)  # (N,)
    empty = area < 1
    cx = torch.where(empty, torch.full_like(cx, width / 2), cx)
    cy = torch.where(empty, torch.full_like(cy, height / 2), cy)
    return cx, cy, torch.where(empty, torch.full_like(area, float(height * width)), area)


def sample_crops(
    region: Tensor, crop_size: int, generator: torch.Generator, config: AugmentConfig
) -> tuple[Tensor, Tensor]:
    """Affine maps (N, 2, 3) for F.affine_grid, and each crop's shrink (N,), source px per pixel.

    Each photo gets `config.candidates` random crops centred in its region (FOV or valid
    mask, (N, 1, H, W)); the first with at least `min_inside` of its area inside is kept,
    else the one most inside.
    """
    n, _, height, width = region.shape
    k, dev, g = config.candidates, region.device, generator
    cx, cy, area = _centroids(region)  # (N,) each
    if config.zoom is None:
        frac = _uniform(g, (n, k), *config.scale, dev)  # (N, K)
        side = torch.sqrt(frac * area[:, None])  # (N, K) source px
    else:
        zoom = torch.exp(
            _uniform(g, (n, k), math.log(config.zoom[0]), math.log(config.zoom[1]), dev)
        )
        side = crop_size / zoom  # (N, K)
    aspect = torch.exp(
        _uniform(g, (n, k), math.log(config.ratio[0]), math.log(config.ratio[1]), dev)
    )
    w_px, h_px = side * aspect.sqrt(), side / aspect.sqrt()  # (N, K)
    angle = _uniform(g, (n, k), 0.0, 2 * math.pi if config.rotate else 0.0, dev)  # (N, K)
    mirror = (_uniform(g, (n, k), 0, 1, dev) < (0.5 if config.flip else 0.0)).float() * -2 + 1
    rho = torch.sqrt(area / math.pi)[:, None] * _uniform(g, (n, k), 0, 1, dev).sqrt()  # (N, K)
    phi = _uniform(g, (n, k), 0.0, 2 * math.pi, dev)  # (N, K)
    centre_x, centre_y = cx[:, None] + rho * phi.cos(), cy[:, None] + rho * phi.sin()  # (N, K)
    cos, sin = angle.cos(), angle.sin()
    # theta = diag(1/W, 1/H) . R(angle) . diag(mirror * w_px, h_px), shift 2 * centre / size - 1
    theta = torch.stack(
        [
            torch.stack(
                [cos * mirror * w_px / width, -sin * h_px / width, 2 * centre_x / width - 1], -1
            ),
            torch.stack(
                [sin * mirror * w_px / height, cos * h_px / height, 2 * centre_y / height - 1], -1
            ),
        ],
        dim=-2,
    )  # (N, K, 2, 3)
    # How much of each candidate lies inside: the region sampled at 8 x 8 points of the crop.
    ticks = (torch.arange(8, device=dev, dtype=torch.float32) + 0.5) / 4 - 1  # (8,)
    gy, gx = torch.meshgrid(ticks, ticks, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], -1).view(64, 3)  # (64, 3)
    probe = (theta @ points.T).transpose(-1, -2)  # (N, K, 64, 2)
    px = ((probe[..., 0] + 1) * width / 2).floor().long()  # (N, K, 64) nearest source pixel
    py = ((probe[..., 1] + 1) * height / 2).floor().long()
    within = (px >= 0) & (px < width) & (py >= 0) & (py < height)  # (N, K, 64)
    photo = torch.arange(n, device=dev).view(n, 1, 1)
    values = region[photo, 0, py.clamp(0, height - 1), px.clamp(0, width - 1)]  # (N, K, 64)
    inside = ((values > 0.5) & within).float().mean(dim=-1)  # (N, K)
    ok = inside >= config.min_inside
    pick = torch.where(ok.any(dim=1), ok.float().argmax(dim=1), inside.argmax(dim=1))  # (N,)
    rows = torch.arange(n, device=dev)
    chosen = theta[rows, pick]  # (N, 2, 3)
    shrink = torch.maximum(w_px[rows, pick], h_px[rows, pick]) / crop_size  # (N,)
    return chosen, shrink


def _affine_grid(theta: Tensor, size: int) -> Tensor:
    """F.affine_grid(theta, (N, *, size, size), align_corners=False), by broadcasting: the
    library's version runs a batched matrix product that cost more than the sampling."""
    ticks = (torch.arange(size, device=theta.device, dtype=theta.dtype) * 2 + 1) / size - 1
    x, y = ticks.view(1, 1, size), ticks.view(1, size, 1)  # output pixel centres
    t = theta.reshape(-1, 6, 1, 1)  # (N, 6, 1, 1)
    grid_x = t[:, 0] * x + t[:, 1] * y + t[:, 2]  # (N, size, size)
    grid_y = t[:, 3] * x + t[:, 4] * y + t[:, 5]  # (N, size, size)
    return torch.stack([grid_x, grid_y], dim=-1)  # (N, size, size, 2)


class _Pyramid:
    """Sources stacked as channels, with mip levels made on first use and shared by all views.

    Level L averages 2^L x 2^L blocks. On the GPU the stack is float16 (0-255 and 0/1 values
    survive it, and sampling positions keep 1/4-pixel precision at 1024 px), which halves the
    bytes every step moves; on the CPU it is float32. Copying each source into its channels
    converts it on the way, with no separate concatenation.
    """

    def __init__(self, sources: list[Tensor]):
        n, _, height, width = sources[0].shape
        device = sources[0].device
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        channels = sum(source.shape[1] for source in sources)
        base = torch.empty((n, channels, height, width), dtype=dtype, device=device)
        start = 0
        for source in sources:
            base[:, start : start + source.shape[1]] = source  # (N, C_i, H, W), converted
            start += source.shape[1]
        self.levels = {0: base}  # level -> (N, C, H/2^L, W/2^L)

    def level(self, level: int) -> Tensor:
        if level not in self.levels:
            self.levels[level] = F.avg_pool2d(self.level(level - 1), 2, ceil_mode=True)
        return self.levels[level]


def _warp(
    pyramid: _Pyramid, theta: Tensor, shrink: Tensor, crop_size: int, antialias: bool
) -> Tensor:
    """Sample a pyramid's stack through theta (N, 2, 3) to float32 (N, C, crop, crop).

    A crop that shrinks its source by s is sampled from the source averaged over 2^L x 2^L
    blocks, L = floor(log2 s) (a mip level), at 2 x 2 points per output pixel: vessels do not
    alias, at a quarter of brute supersampling's cost. theta is in normalised coordinates, so
    it holds at every level.
    """
    base = pyramid.level(0)
    n, channels = theta.shape[0], base.shape[1]
    levels = torch.zeros(n, dtype=torch.long)  # (N,) on the CPU: it steers Python control flow
    supersample = 1
    if antialias:
        factor = shrink.detach().float().cpu().clamp_min(1.0)  # (N,)
        levels = torch.floor(torch.log2(factor) + 1e-6).long().clamp(0, 3)
        supersample = 2 if bool((factor / 2.0**levels > 1.0 + 1e-3).any()) else 1
    grid = _affine_grid(theta, crop_size * supersample).to(base.dtype)  # (N, s, s, 2)
    out = torch.empty((n, channels, crop_size, crop_size), device=base.device)
    for level in levels.unique().tolist():
        rows = (levels == level).nonzero().squeeze(1)  # (n_L,)
        whole = len(rows) == n
        rows = rows.to(base.device)
        source, points = pyramid.level(level), grid  # (N, C, H/2^L, W/2^L), (N, s, s, 2)
        if not whole:
            source, points = source[rows], points[rows]  # only this level's photos
        values = F.grid_sample(source, points, align_corners=False)  # (n_L, C, s, s)
        if supersample > 1:
            values = F.avg_pool2d(values, supersample)  # (n_L, C, crop, crop)
        out[rows] = values.to(torch.float32)
    return out


def colour_jitter(
    images: Tensor, support: Tensor, generator: torch.Generator, config: AugmentConfig
) -> Tensor:
    """Brightness, contrast, saturation, hue on (N, 3, h, w) 0-255; black outside the support."""
    n, dev, g = images.shape[0], images.device, generator
    on = (_uniform(g, (n,), 0, 1, dev) < config.jitter_p).float()  # (N,) 1 = jitter this photo

    def factor(spread: float) -> Tensor:
        return (1 + on * _uniform(g, (n,), -spread, spread, dev)).view(n, 1, 1, 1)  # (N, 1, 1, 1)

    luma = torch.tensor(_LUMA, device=dev).view(1, 3, 1, 1)
    x = images * factor(config.brightness)  # (N, 3, h, w)
    grey = (x * luma).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    mean = (grey * support).sum(dim=(2, 3), keepdim=True) / support.sum(
        dim=(2, 3), keepdim=True
    ).clamp_min(1)
    x = (x - mean) * factor(config.contrast) + mean  # contrast about the mean inside the FOV
    grey = (x * luma).sum(dim=1, keepdim=True)  # (N, 1, h, w)
    x = (x - grey) * factor(config.saturation) + grey
    # Hue: rotate the chroma plane (I, Q) of YIQ by a small angle.
    turn = on * _uniform(g, (n,), -config.hue, config.hue, dev) * 2 * math.pi  # (N,)
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev
    )
    rotation = torch.zeros((n, 3, 3), device=dev)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = turn.cos(), -turn.sin()
    rotation[:, 2, 1], rotation[:, 2, 2] = turn.sin(), turn.cos()
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (N, 3, 3)
    x = torch.einsum("nij,njhw->nihw", matrix, x)  # (N, 3, h, w)
    return (x * support).clamp(0, 255)


def gaussian_blur(images: Tensor, generator: torch.Generator, config: AugmentConfig) -> Tensor:
    """Separable Gaussian blur, per-photo sigma, on (N, C, h, w); unblurred photos untouched."""
    n, c, h, w = images.shape
    dev, g = images.device, generator
    on = _uniform(g, (n,), 0, 1, dev) < config.blur_p  # (N,)
    sigma = _uniform(g, (n,), *config.blur_sigma, dev)  # (N,)
    radius = min(math.ceil(3 * config.blur_sigma[1]), (min(h, w) - 1) // 2)
    taps = torch.arange(-radius, radius + 1, device=dev, dtype=torch.float32)  # (k,)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))  # (N, k)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (taps == 0).float().expand(n, -1)  # (N, k)
    kernel = torch.where(on[:, None], kernel, identity).repeat_interleave(c, dim=0)  # (N*C, k)
    x = images.reshape(1, n * c, h, w)  # (1, N*C, h, w): one group per photo and channel
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(n * c, 1, 1, -1), groups=n * c
    )
    x = F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(n * c, 1, -1, 1), groups=n * c
    )
    return x.view(n, c, h, w)


def shadow(images: Tensor, generator: torch.Generator, config: AugmentConfig) -> Tensor:
    """Darken (N, C, h, w) by a smooth Gaussian shadow per photo, at `config.shadow_p`.

    The centre may lie outside the crop (up to half a side beyond it), so a patch sees the
    middle of a dark region, its edge as a gradient, or a crescent; the target is untouched:
    a shadow is not a haemorrhage, which is what the model is to learn.
    """
    n, _, h, w = images.shape
    dev, g = images.device, generator
    side = float(max(h, w))
    on = (_uniform(g, (n,), 0, 1, dev) < config.shadow_p).float()  # (N,)
    cx = _uniform(g, (n,), -0.5 * side, 1.5 * side, dev).view(n, 1, 1)  # (N, 1, 1)
    cy = _uniform(g, (n,), -0.5 * side, 1.5 * side, dev).view(n, 1, 1)
    sigma = _uniform(g, (n,), *config.shadow_sigma, dev).view(n, 1, 1) * side
    depth = (on * _uniform(g, (n,), *config.shadow_depth, dev)).view(n, 1, 1)
    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w) + 0.5
    blob = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))  # (N, h, w)
    return images * (1 - depth * blob)[:, None]  # (N, C, h, w)


def _view(pyramid: _Pyramid, g: torch.Generator, crop_size: int, config: AugmentConfig) -> Tensor:
    """(N, 4, H, W): RGB 0-255 and the FOV -> one random view (N, 3, crop, crop), float 0-255."""
    theta, shrink = sample_crops(pyramid.level(0)[:, 3:4], crop_size, g, config)
    warped = _warp(pyramid, theta, shrink, crop_size, config.antialias)  # (N, 4, crop, crop)
    crops = colour_jitter(warped[:, :3], warped[:, 3:4], g, config)  # (N, 3, crop, crop)
    return gaussian_blur(crops, g, config).clamp(0, 255)


def moco_views(
    images: Tensor,
    fov: Tensor,
    generator: torch.Generator | int | None,
    crop_size: int,
    config: AugmentConfig = MOCO_AUGMENT,
    model_config: ModelConfig | None = None,
) -> tuple[Tensor, Tensor]:
    """Two independent normalised views (query, key) of the same photos, each (N, 3, crop, crop)."""
    g = as_generator(generator)
    model_config = model_config or ModelConfig()
    pyramid = _Pyramid([images, fov])  # (N, 4, H, W): RGB and FOV
    query = normalise(_view(pyramid, g, crop_size, config), model_config)  # (N, 3, crop, crop)
    key = normalise(_view(pyramid, g, crop_size, config), model_config)  # (N, 3, crop, crop)
    return query, key


def augment_pair(
    images: Tensor,
    masks: Tensor,
    valid: Tensor,
    generator: torch.Generator | int | None,
    crop_size: int,
    config: AugmentConfig = PAIR_AUGMENT,
) -> tuple[Tensor, Tensor, Tensor]:
    """Segmentation-safe crops: the same geometry for image, soft mask and valid mask.

    images (N, 3, H, W) float 0-255, masks (N, 1, H, W) float 0-1, valid (N, 1, H, W) 0/1
    (in the FOV and annotated) -> the same at (crop, crop). Colour and blur touch images only;
    images stay 0-255, not normalised. Outside the source, valid is 0.
    """
    g = as_generator(generator)
    lit = images.amax(dim=1, keepdim=True) > 0  # (N, 1, H, W): preprocess blacks the surround
    pyramid = _Pyramid([images, masks, valid, lit])  # (N, 6, H, W)
    theta, shrink = sample_crops(pyramid.level(0)[:, 4:5], crop_size, g, config)
    warped = _warp(pyramid, theta, shrink, crop_size, config.antialias)  # (N, 6, crop, crop)
    crops = colour_jitter(warped[:, :3], warped[:, 5:6], g, config)
    crops = gaussian_blur(crops, g, config).clamp(0, 255)  # (N, 3, crop, crop)
    if config.shadow_p > 0:
        crops = shadow(crops, g, config)
    return crops, warped[:, 3:4].clamp(0, 1), (warped[:, 4:5] >= 0.5).to(torch.float32)
