"""The synthetic world's drawing styles: the whole image re-drawn as a sketch, a cartoon or a
painting (the shifted sets' renditions), with their caption words (STYLES), their filters and
apply_style.
"""

from __future__ import annotations

import numpy as np

from .canvas import Nuisance, edges, gaussian_blur, luminance, pixel_grid


def _sketch(img, rng):
    # pencil lines where the (slightly smoothed) image has edges, hatching in its dark areas,
    # on white paper: grey only, every channel equal
    soft = gaussian_blur(img, 0.6)
    lines = np.clip(edges(soft) * rng.uniform(5.0, 7.0), 0, 1)
    y, x = pixel_grid(lines)
    hatch = ((x + y) % 4 == 0) & (luminance(soft) < 0.25)
    gray = np.clip(0.97 - 0.9 * lines - 0.35 * hatch, 0, 1)
    return np.repeat(gray[..., None], 3, axis=2)


def _cartoon(img, rng):
    # flat, saturated colour regions with black outlines
    soft = gaussian_blur(img, 0.8)
    mean = soft.mean(axis=2, keepdims=True)
    flat = np.round(np.clip(mean + (soft - mean) * 1.5, 0, 1) * 3) / 3
    outline = edges(soft) > rng.uniform(0.06, 0.09)
    flat[outline] = 0.05
    return flat


def _painting(img, rng):
    # brush strokes (smearing along one direction), warm varnish, canvas weave
    axis = int(rng.integers(2))
    smeared = sum(np.roll(img, s, axis=axis) for s in (-1, 0, 1)) / 3
    smeared = gaussian_blur(smeared, 0.5)
    tint = np.array((1.08, 1.0, 0.82), np.float32) * rng.uniform(0.95, 1.05)
    y, x = pixel_grid(img[..., 0])
    weave = 1 + 0.06 * np.sign(np.sin(y * 2.1) * np.sin(x * 2.1))
    return np.clip(smeared, 0, 1) ** 0.85 * tint * weave[..., None]


STYLES = {
    "sketch": Nuisance("sketch", ("sketch", "pencil sketch", "drawing", "pencil drawing", "line drawing")),
    "cartoon": Nuisance("cartoon", ("cartoon", "cartoon drawing", "illustration", "comic")),
    "painting": Nuisance("painting", ("painting", "oil painting", "watercolor painting", "watercolor", "artwork")),
}
STYLE_FILTERS = {"sketch": _sketch, "cartoon": _cartoon, "painting": _painting}


def apply_style(img: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    return np.clip(STYLE_FILTERS[style](img, rng), 0, 1).astype(np.float32)
