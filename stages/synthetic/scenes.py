"""The synthetic world's scenes: the backgrounds (each a land, water or neither place, as in
Waterbirds), the words a caption uses for them, their painters and render_scene.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .canvas import Canvas, grid, jitter


# scene name -> place (0 land, 1 water, None neither). The first ten are SynthBirds' scenes, in
# the order its generator draws from (stages.synthetic.groups.SCENES); the rest exist for the source task,
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
