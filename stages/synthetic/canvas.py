"""The synthetic world's shared drawing primitives: the scene painters' Canvas, colour jitter,
pixel grids, pixel operations (luminance, blur, block means, bilinear resampling, edges) and the
Nuisance dataclass, a nuisance with its caption words.

Everything works in numpy on float RGB images in [0, 1] (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Canvas:
    """What every scene painter shares: the image, pixel grids in [0, 1) and the draws that every
    scene makes first (so that adding a scene never changes another scene's random stream)."""
    img: np.ndarray
    yy: np.ndarray
    xx: np.ndarray
    horizon: float
    sky: np.ndarray
    rng: np.random.Generator

    def jit(self, c, s=0.06) -> np.ndarray:
        """`jitter` of colour `c` drawn from the canvas's random stream."""
        return jitter(self.rng, c, s)


def jitter(rng: np.random.Generator, c, s=0.06) -> np.ndarray:
    """A colour with a random per-image tint."""
    return np.clip(np.array(c, np.float32) + rng.normal(0, s, 3), 0, 1)


def grid(size: int):
    """(yy, xx) [size, size] float32: each pixel's row and column over `size`, in [0, 1)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def pixel_grid(mask: np.ndarray):
    """[2, H, W] float32 of a mask's shape: each pixel's row and column index."""
    return np.mgrid[0:mask.shape[0], 0:mask.shape[1]].astype(np.float32)


# ---- shared pixel operations -------------------------------------------------------------------

def luminance(img: np.ndarray) -> np.ndarray:
    """Luma [H, W] of an RGB image [H, W, 3] (Rec. 601 weights)."""
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the first two axes, edges reflected."""
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    for axis in (0, 1):
        n = img.shape[axis]
        pad = [(r, r) if a == axis else (0, 0) for a in range(img.ndim)]
        padded = np.pad(img, pad, mode="reflect")
        img = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return img.astype(np.float32)


def block_mean(img: np.ndarray, block: int) -> np.ndarray:
    """Each block x block tile replaced by its mean (the last tiles may be smaller)."""
    h, w = img.shape[:2]
    ph, pw = -h % block, -w % block
    padded = np.pad(img, [(0, ph), (0, pw), (0, 0)], mode="edge")
    tiles = padded.reshape((h + ph) // block, block, (w + pw) // block, block, -1).mean(axis=(1, 3))
    return np.repeat(np.repeat(tiles, block, 0), block, 1)[:h, :w].astype(np.float32)


def upsample_bilinear(small: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square image to size x size (pixel centres aligned)."""
    n = small.shape[0]
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    t = (pos - lo).astype(np.float32)
    rows = small[lo] * (1 - t)[:, None, None] + small[hi] * t[:, None, None]
    return rows[:, lo] * (1 - t)[None, :, None] + rows[:, hi] * t[None, :, None]


def sample_bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """`img` read at fractional pixel positions (clamped to the image), bilinearly."""
    h, w = img.shape[:2]
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.minimum(ys.astype(int), h - 2), np.minimum(xs.astype(int), w - 2)
    ty, tx = (ys - y0)[..., None], (xs - x0)[..., None]
    top = img[y0, x0] * (1 - tx) + img[y0, x0 + 1] * tx
    bottom = img[y0 + 1, x0] * (1 - tx) + img[y0 + 1, x0 + 1] * tx
    return (top * (1 - ty) + bottom * ty).astype(np.float32)


def edges(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude, [H, W]: the largest over the colour channels, so that a red bird on a
    green forest of the same brightness still has an outline."""
    gy, gx = np.gradient(img, axis=(0, 1))
    return np.hypot(gx, gy).max(axis=2)


def high_frequency_energy(img: np.ndarray) -> float:
    """Mean squared difference of neighbouring pixels (what blur removes and noise adds)."""
    img = np.asarray(img, np.float32)
    return float(np.mean(np.diff(img, axis=0) ** 2) + np.mean(np.diff(img, axis=1) ** 2))


# ---- nuisances ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nuisance:
    """One nuisance and its caption words: `adjectives` go before a noun ("a striped duck",
    "a blurry photo of", "a sketch of"), `phrases` after one ("a duck with stripes",
    "a photo of a duck in dim light")."""
    name: str
    adjectives: tuple[str, ...]
    phrases: tuple[str, ...] = ()
    scale: float = 1.0  # framing: the object's size relative to the usual one
