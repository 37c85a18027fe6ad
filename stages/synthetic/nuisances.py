"""The nuisances of the synthetic world: what an LLM names as spurious and the world draws.

Four kinds, each drawn procedurally in numpy on float RGB images in [0, 1] (H, W, 3) and strong
enough to be visible at 32 px, each with the words a caption uses for it:

- scenes (the background; each a land, water or neither place, as in Waterbirds),
- textures (on the object only, given its mask: patterns, colours, materials),
- image quality (the whole image: blur, noise, pixels, lighting, contrast, colour, framing, and
  what a camera or a print does to a picture: smear, sharpening, tilt, a frame, a mirror, halftone),
- styles (the whole image re-drawn: sketch, cartoon, painting; the shifted sets' renditions).

The words of those captions that the world renders are stages.synthetic.vocabulary's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

# ---- scenes ------------------------------------------------------------------------------------

# scene name -> place (0 land, 1 water, None neither). The first ten are SynthBirds' scenes, in
# the order its generator draws from (stages.synthetic.world.SCENES); the rest exist for the source task,
# the pre-training captions and the LLM's background words.
SCENES = {
    "forest": 0, "bamboo": 0, "meadow": 0, "desert": 0,
    "ocean": 1, "lake": 1, "river": 1, "marsh": 1,
    "snow": None, "city": None,
    "mountain": 0, "jungle": 0, "garden": 0, "branch": 0,
    "beach": 1,
    "street": None, "sky": None,
}
SCENE_WORDS = {
    "forest": ["forest", "woods", "trees"], "bamboo": ["bamboo forest", "bamboo grove"],
    "meadow": ["meadow", "grassland", "field", "grass"], "desert": ["desert", "sand dunes"],
    "ocean": ["ocean", "sea", "waves"], "lake": ["lake", "pond"], "river": ["river", "stream"],
    "marsh": ["marsh", "wetland", "swamp"], "snow": ["snow", "snowy field", "ice"],
    "city": ["city", "buildings", "rooftop"],
    "mountain": ["mountain", "mountains", "hills", "cliff", "rocks"],
    "jungle": ["jungle", "rainforest", "tropical forest"],
    "garden": ["garden", "park", "backyard", "flowers"], "branch": ["tree branch", "branch", "tree"],
    "beach": ["beach", "shore", "sand", "coast", "seaside"],
    "street": ["street", "road", "sidewalk"], "sky": ["sky", "clouds", "air"],
}
# prepositions that read naturally before "the <scene word>"; "in" and "near" otherwise
SCENE_PREPOSITIONS = {
    "ocean": ("on", "by"), "lake": ("on", "by"), "river": ("in", "by"), "beach": ("on", "at"),
    "street": ("on",), "branch": ("on",), "mountain": ("on", "in"), "sky": ("in",), "city": ("in",),
}
PLACE_PHRASES = {0: ["on land", "on the ground"], 1: ["on water", "by the water"], None: ["outdoors"]}


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
        return jitter(self.rng, c, s)


def jitter(rng: np.random.Generator, c, s=0.06) -> np.ndarray:
    """A colour with a random per-image tint."""
    return np.clip(np.array(c, np.float32) + rng.normal(0, s, 3), 0, 1)


def grid(size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def _forest(c):
    c.img[:] = c.jit((0.10, 0.35, 0.12))
    for x0 in c.rng.uniform(0, 1, 5):
        c.img[np.abs(c.xx - x0) < 0.035] = c.jit((0.35, 0.22, 0.10))


def _bamboo(c):
    c.img[:] = c.jit((0.55, 0.75, 0.30))
    for x0 in c.rng.uniform(0, 1, 7):
        c.img[np.abs(c.xx - x0) < 0.02] = c.jit((0.80, 0.85, 0.40))
    c.img[(np.sin(c.yy * 40 + c.rng.uniform(0, 6)) > 0.95)] *= 0.8


def _meadow(c):
    c.img[:] = c.sky
    c.img[c.yy > c.horizon] = c.jit((0.40, 0.70, 0.20))
    dots = (c.rng.uniform(0, 1, c.yy.shape) > 0.96) & (c.yy > c.horizon)
    c.img[dots] = c.jit((0.95, 0.90, 0.20))


def _desert(c):
    c.img[:] = c.jit((0.85, 0.75, 0.55))
    c.img[c.yy < c.horizon + 0.08 * np.sin(c.xx * 8 + c.rng.uniform(0, 6))] = c.sky


def _ocean(c):
    c.img[:] = c.sky
    c.img[c.yy > c.horizon] = c.jit((0.05, 0.20, 0.55))
    waves = (np.sin(c.yy * 60 + c.xx * 6 + c.rng.uniform(0, 6)) > 0.85) & (c.yy > c.horizon)
    c.img[waves] = c.jit((0.85, 0.90, 0.95))


def _lake(c):
    c.img[:] = c.jit((0.15, 0.40, 0.15))
    c.img[c.yy > c.horizon] = c.jit((0.25, 0.45, 0.65))
    c.img[(c.yy > c.horizon) & (np.sin(c.xx * 50 + c.rng.uniform(0, 6)) > 0.97)] *= 1.2


def _river(c):
    c.img[:] = c.jit((0.30, 0.60, 0.25))
    band = np.abs(c.yy - (0.4 + 0.3 * c.xx + 0.1 * np.sin(c.xx * 6 + c.rng.uniform(0, 6)))) < 0.2
    c.img[band] = c.jit((0.20, 0.45, 0.75))


def _marsh(c):
    c.img[:] = c.jit((0.30, 0.45, 0.50))
    for x0 in c.rng.uniform(0, 1, 9):
        reed = (np.abs(c.xx - x0) < 0.015) & (c.yy > c.rng.uniform(0.2, 0.6))
        c.img[reed] = c.jit((0.50, 0.55, 0.25))


def _snow(c):
    c.img[:] = c.jit((0.70, 0.75, 0.82))
    c.img[c.yy > c.horizon] = c.jit((0.96, 0.96, 0.98), 0.02)


def _city(c):
    c.img[:] = c.sky
    for x0 in np.arange(0, 1, 0.2) + c.rng.uniform(0, 0.1):
        top = c.rng.uniform(0.1, 0.6)
        c.img[(c.xx > x0) & (c.xx < x0 + 0.16) & (c.yy > top)] = c.jit((0.45, 0.45, 0.48), 0.08)


def _mountain(c):
    # grey peaks with snow caps over green-grey foothills
    c.img[:] = c.sky
    ridge = c.horizon - 0.25 + 0.35 * np.abs(((c.xx * c.rng.uniform(1.5, 2.5) + c.rng.uniform(0, 1)) % 1) - 0.5)
    rock = c.yy > ridge
    c.img[rock] = c.jit((0.50, 0.48, 0.46))
    c.img[rock & (c.yy < ridge + 0.08)] = c.jit((0.95, 0.95, 0.97), 0.02)
    c.img[c.yy > 0.75] = c.jit((0.35, 0.45, 0.30))


def _jungle(c):
    # very dark green, big bright leaves, hanging vines and a few red flowers
    c.img[:] = c.jit((0.03, 0.20, 0.06))
    for y0, x0 in c.rng.uniform(0, 1, (6, 2)):
        leaf = ((c.yy - y0) / 0.07) ** 2 + ((c.xx - x0) / 0.16) ** 2 < 1
        c.img[leaf] = c.jit((0.25, 0.75, 0.15))
    for x0 in c.rng.uniform(0, 1, 4):
        c.img[(np.abs(c.xx - x0 - 0.03 * np.sin(c.yy * 12)) < 0.015)] = c.jit((0.15, 0.30, 0.05))
    flowers = c.rng.uniform(0, 1, c.yy.shape) > 0.985
    c.img[flowers] = c.jit((0.95, 0.15, 0.20))


def _garden(c):
    # lawn behind a wooden fence, clusters of coloured flowers
    c.img[:] = c.jit((0.30, 0.62, 0.25))
    fence = (c.yy > c.horizon - 0.15) & (c.yy < c.horizon + 0.05)
    c.img[fence & ((c.xx * 8 % 1 < 0.3) | (np.abs(c.yy - c.horizon + 0.08) < 0.02))] = c.jit((0.70, 0.55, 0.35))
    c.img[c.yy < c.horizon - 0.15] = c.sky
    for y0, x0 in c.rng.uniform(0, 1, (7, 2)):
        bloom = ((c.yy - max(y0, c.horizon + 0.1)) ** 2 + (c.xx - x0) ** 2) < 0.045 ** 2
        c.img[bloom] = c.jit([(0.95, 0.20, 0.35), (0.70, 0.30, 0.85), (0.98, 0.85, 0.20)][c.rng.integers(3)])


def _branch(c):
    # a thick brown branch across soft, out-of-focus foliage
    c.img[:] = c.jit((0.55, 0.72, 0.55))
    for y0, x0 in c.rng.uniform(0, 1, (5, 2)):
        c.img[((c.yy - y0) ** 2 + (c.xx - x0) ** 2) < 0.12 ** 2] = c.jit((0.35, 0.58, 0.30))
    slope, y0 = c.rng.uniform(-0.3, 0.3), c.rng.uniform(0.68, 0.8)
    c.img[np.abs(c.yy - (y0 + slope * (c.xx - 0.5))) < 0.05] = c.jit((0.40, 0.25, 0.12))


def _beach(c):
    # sky, a band of sea, white surf, pale sand
    c.img[:] = c.sky
    c.img[c.yy > c.horizon] = c.jit((0.10, 0.45, 0.70))
    shore = c.horizon + c.rng.uniform(0.15, 0.25) + 0.03 * np.sin(c.xx * 10 + c.rng.uniform(0, 6))
    c.img[c.yy > shore] = c.jit((0.93, 0.85, 0.62))
    c.img[np.abs(c.yy - shore) < 0.025] = 0.97


def _street(c):
    # a brick wall, a pale sidewalk, dark asphalt with a dashed white lane
    c.img[:] = c.jit((0.62, 0.30, 0.22))
    c.img[(c.yy * 10 % 1 < 0.12)] = 0.8
    c.img[c.yy > c.horizon] = c.jit((0.72, 0.72, 0.70), 0.03)
    road = c.yy > c.horizon + 0.15
    c.img[road] = c.jit((0.25, 0.25, 0.27), 0.03)
    c.img[road & (np.abs(c.yy - 0.8) < 0.025) & (c.xx * 4 % 1 < 0.5)] = 0.95


def _sky(c):
    # open sky, lighter towards the horizon, with white clouds
    c.img[:] = c.sky * (0.85 + 0.25 * c.yy[..., None])
    for y0, x0 in c.rng.uniform(0, 1, (3, 2)):
        c.img[((c.yy - y0) / 0.07) ** 2 + ((c.xx - x0) / 0.2) ** 2 < 1] = 0.97


PAINTERS: dict[str, Callable[[Canvas], None]] = {
    "forest": _forest, "bamboo": _bamboo, "meadow": _meadow, "desert": _desert, "ocean": _ocean,
    "lake": _lake, "river": _river, "marsh": _marsh, "snow": _snow, "city": _city,
    "mountain": _mountain, "jungle": _jungle, "garden": _garden, "branch": _branch, "beach": _beach,
    "street": _street, "sky": _sky,
}


def render_scene(scene: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A scene as float RGB [size, size, 3] in [0, 1]; each scene has its own palette and texture."""
    if scene not in PAINTERS:
        raise ValueError(f"unknown scene {scene!r}")
    yy, xx = grid(size)
    img = np.zeros((size, size, 3), np.float32)
    horizon = rng.uniform(0.25, 0.45)  # drawn by every scene, first: see Canvas
    canvas = Canvas(img, yy, xx, horizon, jitter(rng, (0.60, 0.78, 0.95)), rng)
    PAINTERS[scene](canvas)
    return np.clip(img + rng.normal(0, 0.03, img.shape).astype(np.float32), 0, 1)


# ---- shared pixel operations -------------------------------------------------------------------

def luminance(img: np.ndarray) -> np.ndarray:
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


# ---- textures on the object --------------------------------------------------------------------

@dataclass(frozen=True)
class Nuisance:
    """One nuisance and its caption words: `adjectives` go before a noun ("a striped duck",
    "a blurry photo of", "a sketch of"), `phrases` after one ("a duck with stripes",
    "a photo of a duck in dim light")."""
    name: str
    adjectives: tuple[str, ...]
    phrases: tuple[str, ...] = ()
    scale: float = 1.0  # framing: the object's size relative to the usual one


def _contrasting(img: np.ndarray) -> np.ndarray:
    """Per pixel, a colour that stands out from it: dark on light objects, light on dark ones."""
    light = luminance(img)[..., None] > 0.45
    return np.where(light, img * 0.25, 0.6 + 0.4 * img).astype(np.float32)


def _pixel_grid(mask: np.ndarray):
    return np.mgrid[0:mask.shape[0], 0:mask.shape[1]].astype(np.float32)


def _striped(img, mask, rng):
    y, x = _pixel_grid(mask)
    theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 4.0)
    bands = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period) > 0.2
    sel = mask & bands
    img[sel] = _contrasting(img)[sel]


def _spotted(img, mask, rng):
    y, x = _pixel_grid(mask)
    ys, xs = np.nonzero(mask)
    n = max(5, len(ys) // 6)
    picks = rng.choice(len(ys), n)
    spots = np.zeros_like(mask)
    for cy, cx, r in zip(ys[picks], xs[picks], rng.uniform(0.9, 1.4, n)):
        spots |= (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    sel = mask & spots
    img[sel] = _contrasting(img)[sel]


def _checkered(img, mask, rng):
    y, x = _pixel_grid(mask)
    cell = int(rng.integers(2, 4))
    off = rng.integers(0, cell, 2)
    checks = ((y + off[0]) // cell + (x + off[1]) // cell) % 2 == 0
    sel = mask & checks
    img[sel] = _contrasting(img)[sel]


def _furry(img, mask, rng):
    # per-hair brightness jitter inside (added, so that a black crow gets fur too), ragged tufts
    # sticking out of the outline
    img[mask] += rng.normal(0, 0.18, (int(mask.sum()), 1)).astype(np.float32)
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        shifted_mask = np.roll(mask, (dy, dx), axis=(0, 1))
        tuft = shifted_mask & ~mask & (rng.uniform(0, 1, mask.shape) < 0.4)
        img[tuft] = np.roll(img, (dy, dx), axis=(0, 1))[tuft]


def _shiny(img, mask, rng):
    # shaded from light (top) to dark (bottom), with a white specular highlight near the top
    y, x = _pixel_grid(mask)
    ys, xs = np.nonzero(mask)
    cy, cx, sy = ys.mean(), xs.mean(), ys.std() + 1.0
    shade = np.clip(1.25 - 0.35 * (y - cy) / sy, 0.5, 1.4)[..., None]
    hy, hx = cy - 0.6 * sy, cx + rng.uniform(-0.5, 0.5) * sy
    spot = np.exp(-((y - hy) ** 2 + (x - hx) ** 2) / (2 * (0.45 * sy) ** 2))[..., None]
    lit = np.clip(img * shade * (1 - spot) + spot, 0, 1)
    img[mask] = lit[mask]


def _wooden(img, mask, rng):
    # brown wood colour with wavy darker grain
    y, x = _pixel_grid(mask)
    wood = np.array((0.58, 0.38, 0.18), np.float32) * rng.uniform(0.9, 1.1)
    grain = np.sin(2 * np.pi * (y + 0.8 * np.sin(x * 0.4 + rng.uniform(0, 6))) / 3.0) > 0.3
    tex = np.where(grain[..., None], wood * 0.55, wood)
    img[mask] = (0.2 * img + 0.8 * tex)[mask]


def _tinted(img, mask, rng, colour):
    # the object in one colour; its own light and dark parts (head, wing, eye) stay as shading so
    # that the species still shows
    lum = luminance(img)
    shade = 1 + 0.6 * (lum - lum[mask].mean())
    img[mask] = (jitter(rng, colour, 0.03) * shade[..., None])[mask]


def _glass(img, mask, rng):
    # translucent: what is behind shows through, blurred as by a lens (estimated from the pixels
    # around the object, as the scene under it is painted over), with a pale rim and a white
    # highlight across it
    outside = (~mask).astype(np.float32)[..., None]
    behind = gaussian_blur(img * outside, 2.0) / np.maximum(gaussian_blur(outside, 2.0), 1e-3)
    glass = 0.2 * img + 0.8 * behind * np.array((0.98, 1.02, 1.1), np.float32)
    inner = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    rim = mask & ~inner
    glass[rim] = 0.5 * glass[rim] + 0.45
    y, x = _pixel_grid(mask)
    ys, xs = np.nonzero(mask)
    diagonal = (x - xs.mean()) + (y - ys.mean()) * rng.choice([-1.0, 1.0]) + rng.uniform(-2, 2)
    glass[np.abs(diagonal) < 0.8] = 0.97
    img[mask] = glass[mask]


def _stone(img, mask, rng):
    # a carved stone statue: grey and speckled, the object's parts faintly shaded, chiselled
    # grooves, and relief lit from the top left (the outline's upper left bright, lower right dark)
    lum = luminance(img)
    grey = np.array((0.58, 0.56, 0.52), np.float32) * rng.uniform(0.85, 1.1)
    stone = grey * (1 + 0.35 * (lum - lum[mask].mean()))[..., None]
    soft = gaussian_blur(mask.astype(np.float32)[..., None], 1.0)[..., 0]
    gy, gx = np.gradient(soft)
    stone = stone * np.clip(1 + 1.8 * (gx + gy), 0.5, 1.5)[..., None]
    y, x = _pixel_grid(mask)
    theta = rng.uniform(0, np.pi)
    wavy = x * np.cos(theta) + y * np.sin(theta) + 0.8 * np.sin(0.5 * (y * np.cos(theta) - x * np.sin(theta)))
    grooves = np.sin(2 * np.pi * wavy / rng.uniform(3.0, 4.0)) > 0.75
    stone[grooves] *= 0.6
    stone += rng.normal(0, 0.04, mask.shape + (1,)).astype(np.float32)
    img[mask] = stone[mask]


def _ceramic(img, mask, rng):
    # a glazed porcelain figurine: cream-white glaze, cobalt-blue brushwork, one sharp highlight
    lum = luminance(img)
    glaze = jitter(rng, (0.94, 0.93, 0.88), 0.02) * (1 + 0.25 * (lum - lum[mask].mean()))[..., None]
    y, x = _pixel_grid(mask)
    curls = np.sin(0.9 * x + 2 * np.sin(0.7 * y + rng.uniform(0, 6))) > 0.8
    glaze[curls] = jitter(rng, (0.15, 0.25, 0.70), 0.04)
    ys, xs = np.nonzero(mask)
    top = ys.argmin()
    glaze[(y - ys[top] - 1.5) ** 2 + (x - xs[top]) ** 2 < 1.5] = 1.0
    img[mask] = glaze[mask]


def _painted(img, mask, rng):
    # painted over like a decoy: one bright paint, a dark one on the object's darkest parts (eye,
    # dark markings), and brush strokes, each 2 px wide with its own load of paint
    lum = luminance(img)
    dark = lum < lum[mask].mean() - 0.15
    paints = ((0.90, 0.15, 0.12), (0.98, 0.85, 0.15), (0.15, 0.35, 0.90), (0.15, 0.70, 0.25),
              (0.98, 0.55, 0.10), (0.10, 0.75, 0.75))
    paint = np.where(dark[..., None], 0.12, jitter(rng, paints[rng.integers(len(paints))], 0.04))
    y, x = _pixel_grid(mask)
    theta = rng.uniform(0, np.pi)
    stroke = ((y * np.cos(theta) - x * np.sin(theta)) // 2).astype(int)
    load = rng.uniform(0.6, 1.2, stroke.max() - stroke.min() + 1)[stroke - stroke.min()]
    img[mask] = (paint * load[..., None])[mask]


def _glittery(img, mask, rng):
    # points of light scattered over the darkened object, some with a cross-shaped glint
    img[mask] *= 0.55
    sparks = mask & (rng.uniform(0, 1, mask.shape) < 0.22)
    colour = jitter(rng, (1.0, 0.92, 0.65), 0.05)
    img[sparks] = colour * rng.uniform(0.8, 1.0, (int(sparks.sum()), 1)).astype(np.float32)
    glints = sparks & (rng.uniform(0, 1, mask.shape) < 0.25)
    arms = np.roll(glints, 1, 0) | np.roll(glints, -1, 0) | np.roll(glints, 1, 1) | np.roll(glints, -1, 1)
    arms &= mask & ~sparks
    img[arms] = 0.4 * img[arms] + 0.6 * colour


# object colours: name -> (RGB, words); the LLM's texture answers are mostly colours
TINTS = {
    "red": ((0.85, 0.12, 0.10), ("red", "scarlet")),
    "blue": ((0.15, 0.30, 0.90), ("blue",)),
    "green": ((0.15, 0.62, 0.20), ("green",)),
    "pink": ((0.98, 0.55, 0.72), ("pink",)),
    "lavender": ((0.66, 0.52, 0.88), ("lavender", "purple", "violet")),
    "brown": ((0.45, 0.28, 0.12), ("brown",)),
    "beige": ((0.86, 0.79, 0.63), ("beige",)),
    "black": ((0.06, 0.06, 0.07), ("black",)),
    "white": ((0.96, 0.96, 0.95), ("white",)),
    "gold": ((0.85, 0.66, 0.18), ("gold", "golden")),
}

TEXTURES = {
    "striped": Nuisance("striped", ("striped", "banded"), ("stripes", "a striped pattern", "striped feathers")),
    "spotted": Nuisance("spotted", ("spotted", "speckled", "dotted", "polka dot"),
                        ("spots", "polka dots", "speckles", "a spotted pattern")),
    "checkered": Nuisance("checkered", ("checkered", "checked"), ("a checkered pattern", "a checkerboard pattern")),
    "furry": Nuisance("furry", ("furry", "fluffy", "fuzzy", "shaggy"), ("fur", "fluffy feathers", "a furry texture")),
    "shiny": Nuisance("shiny", ("shiny", "glossy", "metallic", "iridescent"),
                      ("a shiny surface", "a glossy sheen", "shiny feathers")),
    "wooden": Nuisance("wooden", ("wooden", "carved wooden"), ("a wood grain", "a wooden texture", "a bark texture")),
    **{name: Nuisance(name, words, tuple(f"{w} feathers" for w in words)) for name, (_, words) in TINTS.items()},
    "glass": Nuisance("glass", ("glass", "translucent", "crystal"), ("a glass texture", "a glassy surface")),
    "stone": Nuisance("stone", ("stone", "carved stone", "carved", "sculpted", "etched", "engraved"),
                      ("etched lines", "engraved lines", "a stone texture", "a carved stone surface")),
    "ceramic": Nuisance("ceramic", ("ceramic", "porcelain", "glazed", "glazed ceramic"),
                        ("a ceramic glaze", "a porcelain glaze", "a glazed surface")),
    "painted": Nuisance("painted", ("painted", "brightly painted"),
                        ("brush strokes", "bright paint", "a painted surface")),
    "glittery": Nuisance("glittery", ("glittery", "sparkly", "sparkling", "glittering"),
                         ("glitter", "sparkles", "a glittering surface")),
}
TEXTURE_PAINTERS = {"striped": _striped, "spotted": _spotted, "checkered": _checkered, "furry": _furry,
                    "shiny": _shiny, "wooden": _wooden,
                    **{name: partial(_tinted, colour=rgb) for name, (rgb, _) in TINTS.items()},
                    "glass": _glass, "stone": _stone, "ceramic": _ceramic, "painted": _painted,
                    "glittery": _glittery}


def apply_texture(img: np.ndarray, mask: np.ndarray, texture: str, rng: np.random.Generator) -> np.ndarray:
    """Draw `texture` on the object pixels (`mask`, bool [H, W]) of `img`, in place; returns img."""
    if mask.any():
        TEXTURE_PAINTERS[texture](img, mask, rng)
    return np.clip(img, 0, 1, out=img)


# ---- image quality (the whole image) -----------------------------------------------------------

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
    y, x = _pixel_grid(img[..., 0])
    c = (img.shape[0] - 1) / 2
    ys, xs = c + (cos * (y - c) - sin * (x - c)) / zoom, c + (sin * (y - c) + cos * (x - c)) / zoom
    return sample_bilinear(img, ys, xs)


def _framed(img, rng):
    # a picture frame of black, white, wood, gold or metal, bevelled (lit from the top left), with
    # a dark inner edge
    frames = ((0.08, 0.08, 0.08), (0.95, 0.95, 0.93), (0.50, 0.32, 0.15), (0.80, 0.64, 0.25), (0.62, 0.64, 0.68))
    h, w = img.shape[:2]
    y, x = _pixel_grid(img[..., 0])
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
    y, x = _pixel_grid(img[..., 0]).astype(int)
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


# ---- styles (the whole image re-drawn) ---------------------------------------------------------

def _sketch(img, rng):
    # pencil lines where the (slightly smoothed) image has edges, hatching in its dark areas,
    # on white paper: grey only, every channel equal
    soft = gaussian_blur(img, 0.6)
    lines = np.clip(edges(soft) * rng.uniform(5.0, 7.0), 0, 1)
    y, x = _pixel_grid(lines)
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
    y, x = _pixel_grid(img[..., 0])
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


# ---- words -------------------------------------------------------------------------------------
