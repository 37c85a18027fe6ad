"""The synthetic world's image-quality effects on the whole image (blur, noise, pixels, lighting,
contrast, colour, framing, and what a camera or a print does to a picture: smear, sharpening,
tilt, a frame, a mirror, halftone), with their caption words (QUALITIES), their filters and
apply_quality.
"""

from __future__ import annotations

import numpy as np

from .canvas import (Nuisance, block_mean, gaussian_blur, jitter, luminance, pixel_grid, sample_bilinear,
                     upsample_bilinear)


def _blurry(img, rng):
    return gaussian_blur(img, rng.uniform(1.0, 1.5))


def _grainy(img, rng):
    return img + rng.normal(0, 0.12, img.shape).astype(np.float32)


def _pixelated(img, rng):
    return block_mean(img, int(rng.integers(3, 5)))


def _low_resolution(img, rng):
    # a small image enlarged again, with the colour banding of heavy compression
    factor = int(rng.integers(3, 5))
    small = block_mean(img, factor)[::factor, ::factor]
    return np.round(upsample_bilinear(small, img.shape[0]) * 12) / 12


def _dark(img, rng):
    return img * rng.uniform(0.22, 0.38) * np.array((0.85, 0.95, 1.15), np.float32)


def _overexposed(img, rng):
    return img * rng.uniform(1.7, 2.2) + 0.15


def _low_contrast(img, rng):
    haze = np.array((0.78, 0.79, 0.82), np.float32)
    return haze + (img - haze) * rng.uniform(0.25, 0.4)


def _grayscale(img, rng):
    return np.repeat(luminance(img)[..., None], 3, axis=2)


def _smeared(img, rng):
    # the camera moved during the exposure: each pixel the mean of a straight streak through it
    length = int(rng.integers(5, 8))
    theta = rng.uniform(0, np.pi)
    steps = np.arange(length) - (length - 1) / 2
    dys, dxs = np.round(steps * np.sin(theta)).astype(int), np.round(steps * np.cos(theta)).astype(int)
    h, w = img.shape[:2]
    padded = np.pad(img, [(length, length), (length, length), (0, 0)], mode="edge")
    streak = (padded[length + dy:length + dy + h, length + dx:length + dx + w] for dy, dx in zip(dys, dxs))
    return sum(streak) / length


def _sharpened(img, rng):
    # unsharp masking: every edge overshoots into a bright and a dark halo
    return img + rng.uniform(1.5, 2.5) * (img - gaussian_blur(img, 1.0))


def _tilted(img, rng):
    # the camera turned by 12-20 degrees (the horizon slants), enlarged so that no corner is empty
    angle = np.deg2rad(rng.uniform(12, 20)) * rng.choice([-1.0, 1.0])
    cos, sin = np.cos(angle), np.sin(angle)
    zoom = abs(cos) + abs(sin)
    y, x = pixel_grid(img[..., 0])
    c = (img.shape[0] - 1) / 2
    ys, xs = c + (cos * (y - c) - sin * (x - c)) / zoom, c + (sin * (y - c) + cos * (x - c)) / zoom
    return sample_bilinear(img, ys, xs)


def _framed(img, rng):
    # a picture frame of black, white, wood, gold or metal, bevelled (lit from the top left), with
    # a dark inner edge
    frames = ((0.08, 0.08, 0.08), (0.95, 0.95, 0.93), (0.50, 0.32, 0.15), (0.80, 0.64, 0.25), (0.62, 0.64, 0.68))
    h, w = img.shape[:2]
    y, x = pixel_grid(img[..., 0])
    from_edge = np.minimum(np.minimum(y, x), np.minimum(h - 1 - y, w - 1 - x))
    width = int(rng.integers(2, 4))
    bevel = np.where(np.minimum(y, x) <= np.minimum(h - 1 - y, w - 1 - x), 1.15, 0.8)[..., None]
    out = img.copy()
    band = from_edge < width
    out[band] = (jitter(rng, frames[rng.integers(len(frames))], 0.03) * bevel)[band]
    out[from_edge == width] *= 0.5
    return out


def _mirrored(img, rng):
    # standing on a mirror: the rows below a line are the rows above it, upside down and dimmer
    h = img.shape[0]
    line = int(h * rng.uniform(0.65, 0.78))
    out = img.copy()
    out[line:] = 0.8 * img[2 * line - h:line][::-1]
    return out


# the order in which a halftone dot fills its tile: centre first, corners last
_HALFTONE_ORDER = np.array([[7, 3, 6], [2, 0, 1], [8, 4, 5]])


def _printed(img, rng):
    # a halftone print: for each ink (the lack of red, green or blue) a clustered dot in every 3 x 3
    # tile, growing from the tile's centre to as many pixels as the tile needs ink, on white
    # paper; the image itself half shows through (ink bleeds), so that the object stays
    # recognisable at 32 px
    ink = 1 - block_mean(img, 3)
    y, x = pixel_grid(img[..., 0]).astype(int)
    threshold = (_HALFTONE_ORDER[y % 3, x % 3] + 0.5) / 9
    dots = np.where(ink > threshold[..., None], 0.12, 0.96)
    return 0.5 * dots + 0.5 * img


def _unchanged(img, rng):
    return img


QUALITIES = {
    "blurry": Nuisance("blurry", ("blurry", "blurred", "out of focus", "unfocused"), ("out of focus", "with blur")),
    "grainy": Nuisance("grainy", ("grainy", "noisy"), ("with film grain", "with noise", "with heavy noise")),
    "pixelated": Nuisance("pixelated", ("pixelated", "blocky"), ("with visible pixels", "in big pixels")),
    "low_resolution": Nuisance("low_resolution", ("low resolution", "low quality", "low res", "compressed"),
                               ("at low resolution", "in low quality")),
    "dark": Nuisance("dark", ("dark", "dim", "underexposed", "dimly lit"),
                     ("in dim light", "at night", "in low light", "in the dark", "at dusk", "in shadow",
                      "barely lit", "barely illuminated")),
    "overexposed": Nuisance("overexposed", ("overexposed", "bright", "washed out", "blown out", "brightly lit"),
                            ("in harsh sunlight", "in bright light", "in strong sunlight", "brightly illuminated")),
    "low_contrast": Nuisance("low_contrast", ("low contrast", "faded", "hazy", "foggy", "misty"),
                             ("in fog", "in the haze", "in the mist", "with low contrast")),
    "grayscale": Nuisance("grayscale", ("black and white", "grayscale", "monochrome"),
                          ("in black and white", "in grayscale")),
    "far": Nuisance("far", ("distant", "wide angle"), ("far away", "seen from far away", "in the distance"),
                    scale=0.55),
    "close": Nuisance("close", ("close-up", "zoomed in", "cropped"), ("up close", "in close-up", "cropped close"),
                      scale=1.4),
    "smeared": Nuisance("smeared", ("smeared", "streaked", "streaky"),
                        ("with motion blur", "with motion streaks", "with streaks")),
    "sharpened": Nuisance("sharpened", ("sharpened", "oversharpened"), ("with sharpening halos", "oversharpened")),
    "tilted": Nuisance("tilted", ("tilted", "rotated", "crooked"), ("at an angle", "at a tilt")),
    "framed": Nuisance("framed", ("framed",), ("in a frame", "with a frame", "with a border")),
    "mirrored": Nuisance("mirrored", ("mirrored", "reflected"),
                         ("with a mirror reflection", "reflected in a mirror")),
    "printed": Nuisance("printed", ("printed", "halftone"), ("in halftone", "in print")),
}
QUALITY_FILTERS = {"blurry": _blurry, "grainy": _grainy, "pixelated": _pixelated,
                   "low_resolution": _low_resolution, "dark": _dark, "overexposed": _overexposed,
                   "low_contrast": _low_contrast, "grayscale": _grayscale,
                   "far": _unchanged, "close": _unchanged,  # framing acts through the object's scale
                   "smeared": _smeared, "sharpened": _sharpened, "tilted": _tilted, "framed": _framed,
                   "mirrored": _mirrored, "printed": _printed}


def apply_quality(img: np.ndarray, quality: str, rng: np.random.Generator) -> np.ndarray:
    """The whole image as taken with the given flaw, clipped to [0, 1]."""
    return np.clip(QUALITY_FILTERS[quality](img, rng), 0, 1).astype(np.float32)
