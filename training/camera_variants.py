"""Other cameras, made from a real photo whose field of view is known.

Each variant changes a photo the way another camera, another exposure or another
photographer would, and maps the true field-of-view circle along with it, so that a detector
can be checked against the truth. The field-of-view tests use them; training uses them to
build a synthetic other-camera version of its out-of-fold photos. Numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Circle:
    """A field of view in pixel coordinates of the image it belongs to."""

    cx: float
    cy: float
    r: float

    def error(self, cx: float, cy: float, r: float) -> float:
        """The largest of the centre's and the radius's errors, as a fraction of the radius."""
        return max(abs(cx - self.cx), abs(cy - self.cy), abs(r - self.r)) / self.r


Variant = Callable[[np.ndarray, Circle], tuple[np.ndarray, Circle]]


def _disc(shape: tuple[int, ...], c: Circle) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return np.asarray((xx - c.cx) ** 2 + (yy - c.cy) ** 2 <= c.r**2)


def grey_surround(level: int, seed: int = 0) -> Variant:
    """The surround at a grey level (a camera's raised black level) with sensor noise."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        out = rgb.copy()
        outside = ~_disc(rgb.shape, c)
        noise = np.random.default_rng(seed).normal(0, 1.5, int(outside.sum()))
        out[outside] = np.clip(level + noise, 0, 255).astype(np.uint8)[:, None]
        return out, c

    return apply


def flare(level: int) -> Variant:
    """Veiling glare: a pedestal added to every pixel, so the surround is grey and the
    retina's contrast is lower (dirty optics, a bright room)."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        lut = np.round(level + np.arange(256) * (255 - level) / 255).astype(np.uint8)
        return lut[rgb], c

    return apply


def dark_half(factor: float, side: str = "left") -> Variant:
    """One half of the retina darkened by `factor` (0.6: to 40%), with a soft transition:
    uneven illumination from a decentred pupil."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        x = (np.arange(rgb.shape[1]) - c.cx) / (0.1 * c.r)
        left = 1 / (1 + np.exp(x))  # 1 on the left, 0 on the right
        weight = left if side == "left" else left[::-1]
        gain = (1 - factor * weight).astype(np.float32)
        return np.clip(rgb * gain[None, :, None], 0, 255).astype(np.uint8), c

    return apply


def gamma(g: float) -> Variant:
    """A global tone curve: below 1 brightens (and lifts a black surround), above 1 dims."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        lut = np.clip(np.round(255 * (np.arange(256) / 255) ** g), 0, 255).astype(np.uint8)
        return lut[rgb], c

    return apply


def resized(width: int, height: int) -> Variant:
    """Another sensor: scaled to `height` rows, then cut or padded to `width` columns about
    the centre (a 4:3 frame instead of 3:2)."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        h, w = rgb.shape[:2]
        scaled_w = round(w * height / h)
        small = cv2.resize(rgb, (scaled_w, height), interpolation=cv2.INTER_AREA)
        x0 = (scaled_w - width) // 2
        if x0 >= 0:
            out = small[:, x0 : x0 + width]
        else:
            out = cv2.copyMakeBorder(
                small, 0, 0, -x0, width - scaled_w + x0, cv2.BORDER_CONSTANT, value=(0, 0, 0)
            )
        sx, sy = scaled_w / w, height / h
        moved = Circle((c.cx + 0.5) * sx - 0.5 - x0, (c.cy + 0.5) * sy - 0.5, c.r * sy)
        return np.ascontiguousarray(out), moved

    return apply


def clipped(fx: float = 0.9, fy: float = 0.75) -> Variant:
    """A frame that cuts the circle on all four sides: only arcs at the corners remain."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        h, w = rgb.shape[:2]
        x0, x1 = max(0, round(c.cx - fx * c.r)), min(w, round(c.cx + fx * c.r))
        y0, y1 = max(0, round(c.cy - fy * c.r)), min(h, round(c.cy + fy * c.r))
        return np.ascontiguousarray(rgb[y0:y1, x0:x1]), Circle(c.cx - x0, c.cy - y0, c.r)

    return apply


def rim_notch(angle_deg: float = -30, width: float = 0.08, depth: float = 0.06) -> Variant:
    """A dark notch cut into the rim, as some cameras print to mark orientation."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        a = np.deg2rad(angle_deg)
        ux, uy = np.cos(a), np.sin(a)
        corners = [
            (c.cx + c.r * (rad * ux - along * uy), c.cy + c.r * (rad * uy + along * ux))
            for along, rad in (
                (-width / 2, 1.02),
                (width / 2, 1.02),
                (width / 2, 1 - depth),
                (-width / 2, 1 - depth),
            )
        ]
        out = rgb.copy()
        cv2.fillPoly(out, [np.round(np.array(corners)).astype(np.int32)], (0, 0, 0))
        return out, c

    return apply


def vignette(strength: float) -> Variant:
    """Light falling off towards the rim: there it is (1 - strength) of the centre's."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
        d2 = ((xx - c.cx) ** 2 + (yy - c.cy) ** 2) / c.r**2
        gain = np.clip(1 - strength * d2, 0.05, 1).astype(np.float32)
        return np.clip(rgb * gain[..., None], 0, 255).astype(np.uint8), c

    return apply


def jpeg(quality: int) -> Variant:
    """Saved again as JPEG at `quality`."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
        assert ok and decoded is not None
        return np.ascontiguousarray(decoded[..., ::-1]), c

    return apply


def printed_labels() -> Variant:
    """White text printed in the surround (date, eye, patient number), as many cameras do."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        out = rgb.copy()
        h, w = out.shape[:2]
        thick = max(1, h // 400)
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(out, "OD 2024-05-01", (w // 50, h // 16), font, h / 700, (255,) * 3, thick)
        cv2.putText(out, "ID 123456", (w * 4 // 5, h * 24 // 25), font, h / 800, (230,) * 3, thick)
        return out, c

    return apply


def dark_side(factor: float, angle_deg: float) -> Variant:
    """The side of the retina towards `angle_deg` darkened by `factor`, fading across the
    middle: uneven illumination from any direction."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        yy, xx = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
        a = np.deg2rad(angle_deg)
        along = ((xx - c.cx) * np.cos(a) + (yy - c.cy) * np.sin(a)) / (0.1 * c.r)
        gain = (1 - factor / (1 + np.exp(-along))).astype(np.float32)
        return np.clip(rgb * gain[..., None], 0, 255).astype(np.uint8), c

    return apply


def white_balance(red: float, green: float, blue: float) -> Variant:
    """Channel gains: another sensor's colour response or white balance."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        gains = np.array([red, green, blue], np.float32)
        return np.clip(rgb * gains, 0, 255).astype(np.uint8), c

    return apply


def blur(sigma_frac: float) -> Variant:
    """Defocus: a Gaussian blur, its sigma a fraction of the radius (0.001: 1.7 px on IDRiD)."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        return cv2.GaussianBlur(rgb, (0, 0), max(0.3, sigma_frac * c.r)), c

    return apply


def lower_resolution(factor: float) -> Variant:
    """A sensor with `factor` times the pixels across, shown at this photo's size."""

    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        h, w = rgb.shape[:2]
        small = cv2.resize(
            rgb,
            (max(1, round(w * factor)), max(1, round(h * factor))),
            interpolation=cv2.INTER_AREA,
        )
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), c

    return apply


def random_camera(rng: np.random.Generator) -> tuple[str, Variant]:
    """A random other camera for training: each change drawn independently over its usual
    range; pixels stay where they are (masks need no change). Returns a description too."""
    parts: list[tuple[str, Variant]] = []
    gains = np.exp(rng.normal(0, 0.12, 3))
    parts.append((f"white balance {gains.round(2).tolist()}", white_balance(*gains)))
    if rng.random() < 0.5:
        g = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        parts.append((f"gamma {g:.2f}", gamma(g)))
    if rng.random() < 0.4:
        f, a = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0, 360))
        parts.append((f"side towards {a:.0f} deg darkened {f:.0%}", dark_side(f, a)))
    if rng.random() < 0.4:
        v = float(rng.uniform(0.2, 0.7))
        parts.append((f"vignetting {v:.2f}", vignette(v)))
    if rng.random() < 0.3:
        level = int(rng.integers(5, 40))
        parts.append((f"flare {level}", flare(level)))
    if rng.random() < 0.3:
        level = int(rng.integers(10, 46))
        parts.append((f"grey surround {level}", grey_surround(level, int(rng.integers(1 << 30)))))
    if rng.random() < 0.4:
        factor = float(rng.uniform(0.35, 0.8))
        parts.append((f"resolution x{factor:.2f}", lower_resolution(factor)))
    if rng.random() < 0.3:
        sigma = float(rng.uniform(0.0005, 0.002))
        parts.append((f"blur {sigma:.4f} r", blur(sigma)))
    if rng.random() < 0.5:
        quality = int(rng.integers(40, 95))
        parts.append((f"JPEG {quality}", jpeg(quality)))
    return ", ".join(name for name, _ in parts), chain(*(v for _, v in parts))


def chain(*variants: Variant) -> Variant:
    def apply(rgb: np.ndarray, c: Circle) -> tuple[np.ndarray, Circle]:
        for variant in variants:
            rgb, c = variant(rgb, c)
        return rgb, c

    return apply


#: Variants that leave every pixel where it was: a photo's own mask still fits (evaluation).
PHOTOMETRIC_VARIANTS = (
    "grey surround 45",
    "flare 35",
    "left half darkened 60%",
    "right half darkened 80%",
    "gamma 0.5",
    "gamma 2.0",
    "strong vignetting",
    "JPEG quality 50",
    "dim and darkened half",
)

#: The other-camera set: each of the ways photos from other cameras differ, at the ends of
#: their usual ranges, and two that come together in practice.
CAMERA_VARIANTS: dict[str, Variant] = {
    "grey surround 15": grey_surround(15),
    "grey surround 30": grey_surround(30),
    "grey surround 45": grey_surround(45),
    "flare 35": flare(35),
    "left half darkened 60%": dark_half(0.6, "left"),
    "right half darkened 80%": dark_half(0.8, "right"),
    "gamma 0.5": gamma(0.5),
    "gamma 2.0": gamma(2.0),
    "1500x1152": resized(1500, 1152),
    "2048x1536": resized(2048, 1536),
    "clipped on four sides": clipped(),
    "rim notch": rim_notch(),
    "strong vignetting": vignette(0.7),
    "JPEG quality 50": jpeg(50),
    "labels in the surround": printed_labels(),
    "640x480, JPEG 50": chain(resized(640, 480), jpeg(50)),
    "dim and darkened half": chain(dark_half(0.8, "left"), gamma(1.6)),
}
