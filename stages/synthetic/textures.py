"""The synthetic world's textures on the object (given its mask): patterns, colours (TINTS) and
materials, with their caption words (TEXTURES), their painters and apply_texture.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .canvas import Nuisance, gaussian_blur, jitter, luminance, pixel_grid


def _contrasting(img: np.ndarray) -> np.ndarray:
    """Per pixel, a colour that stands out from it: dark on light objects, light on dark ones."""
    light = luminance(img)[..., None] > 0.45
    return np.where(light, img * 0.25, 0.6 + 0.4 * img).astype(np.float32)


def _striped(img, mask, rng):
    y, x = pixel_grid(mask)
    theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 4.0)
    bands = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period) > 0.2
    sel = mask & bands
    img[sel] = _contrasting(img)[sel]


def _spotted(img, mask, rng):
    y, x = pixel_grid(mask)
    ys, xs = np.nonzero(mask)
    n = max(5, len(ys) // 6)
    picks = rng.choice(len(ys), n)
    spots = np.zeros_like(mask)
    for cy, cx, r in zip(ys[picks], xs[picks], rng.uniform(0.9, 1.4, n)):
        spots |= (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    sel = mask & spots
    img[sel] = _contrasting(img)[sel]


def _checkered(img, mask, rng):
    y, x = pixel_grid(mask)
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
    y, x = pixel_grid(mask)
    ys, xs = np.nonzero(mask)
    cy, cx, sy = ys.mean(), xs.mean(), ys.std() + 1.0
    shade = np.clip(1.25 - 0.35 * (y - cy) / sy, 0.5, 1.4)[..., None]
    hy, hx = cy - 0.6 * sy, cx + rng.uniform(-0.5, 0.5) * sy
    spot = np.exp(-((y - hy) ** 2 + (x - hx) ** 2) / (2 * (0.45 * sy) ** 2))[..., None]
    lit = np.clip(img * shade * (1 - spot) + spot, 0, 1)
    img[mask] = lit[mask]


def _wooden(img, mask, rng):
    # brown wood colour with wavy darker grain
    y, x = pixel_grid(mask)
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
    y, x = pixel_grid(mask)
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
    y, x = pixel_grid(mask)
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
    y, x = pixel_grid(mask)
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
    y, x = pixel_grid(mask)
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
