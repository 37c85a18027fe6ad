"""The synthetic world's drawing styles: the whole image re-drawn as a sketch, a cartoon or a
painting (the shifted sets' renditions), with their caption words (STYLES), their filters and
apply_style.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .canvas import Nuisance, edges, gaussian_blur, luminance, pixel_grid


def _contour(mask):
    """The object's outline, [H, W] bool: its pixels with a 4-neighbour outside it (one pixel
    thick, what an artist draws firmly); the image's border is not an edge of the object."""
    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def _grow(mask):
    """`mask` and its 8 neighbours."""
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool))


def _sketch(img, rng, mask):
    # pencil lines where the (slightly smoothed) image has edges, hatching in its dark areas,
    # on white paper: grey only, every channel equal. The artist draws the bird: its contour firm
    # and shaded by its tone (a crow dark, a swan white), the scene's lines light.
    soft = gaussian_blur(img, 0.6)
    lines = np.clip(edges(soft) * rng.uniform(5.0, 7.0), 0, 1)
    y, x = pixel_grid(lines)
    hatch = ((x + y) % 4 == 0) & (luminance(soft) < 0.25)
    shade = 0.0
    if mask is not None:
        lines = np.maximum(lines * np.where(mask, 1.0, 0.45), _contour(mask))
        shade = 0.6 * (1 - luminance(soft)) * mask
    gray = np.clip(0.97 - 0.9 * lines - 0.35 * hatch - shade, 0, 1)
    return np.repeat(gray[..., None], 3, axis=2)


def _cartoon(img, rng, mask):
    # flat, saturated colour regions with black outlines: the bird's one pixel thick (a thicker
    # line would black out a 10-pixel bird), the scene's only where its edges are strong
    soft = gaussian_blur(img, 0.8 if mask is None else 0.5)
    mean = soft.mean(axis=2, keepdims=True)
    flat = np.round(np.clip(mean + (soft - mean) * 1.5, 0, 1) * 3) / 3
    threshold = rng.uniform(0.06, 0.09)
    if mask is None:
        outline = edges(soft) > threshold
    else:
        outline = _contour(mask) | ((edges(soft) > 3 * threshold) & ~_grow(mask))
    flat[outline] = 0.05
    return flat


def _painting(img, rng, mask):
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


def apply_style(img: np.ndarray, style: str, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
    """`img` re-drawn in `style`; `mask` (the object's pixels) lets the artist draw the object
    apart from its scene, as sketches and cartoons of a bird do."""
    return np.clip(STYLE_FILTERS[style](img, rng, mask), 0, 1).astype(np.float32)
