"""SynthBirds: a procedurally generated stand-in for Waterbirds (DESIGN.md section 4).

Bird sprites of several species (each a landbird or a waterbird) pasted on scenes (land scenes,
water scenes and a few others), written in the exact Waterbirds on-disk layout, plus a separate
captioned pre-training set from the same world for the tiny CLIP.

Species differ in silhouette (body shape, neck, tail, legs) and colours; scenes differ in palette
and texture, so that both the object and the background are visually learnable at 32x32.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .data import SPLITS
from .io import atomic_dir, atomic_path
from .progress import progress

CLASSNAMES = ("landbird", "waterbird")
PLACES = ("land", "water")


@dataclass(frozen=True)
class Species:
    name: str
    y: int  # 0 landbird, 1 waterbird
    body: tuple  # RGB in [0, 1]
    head: tuple
    beak: tuple
    length: float  # body half-length, as a fraction of the sprite size
    height: float  # body half-height
    neck: float  # neck length (herons and swans are long-necked)
    legs: float  # leg length (waders stand tall, ducks float)
    tail_up: bool  # wrens and sparrows cock the tail


SPECIES = (
    Species("sparrow", 0, (0.55, 0.38, 0.22), (0.45, 0.30, 0.18), (0.3, 0.3, 0.3), 0.28, 0.20, 0.0, 0.10, True),
    Species("cardinal", 0, (0.85, 0.10, 0.10), (0.75, 0.05, 0.05), (0.95, 0.6, 0.1), 0.28, 0.20, 0.0, 0.10, True),
    Species("bluejay", 0, (0.25, 0.45, 0.90), (0.85, 0.85, 0.95), (0.1, 0.1, 0.1), 0.30, 0.18, 0.0, 0.10, True),
    Species("crow", 0, (0.08, 0.08, 0.10), (0.12, 0.12, 0.14), (0.2, 0.2, 0.2), 0.34, 0.18, 0.0, 0.12, False),
    Species("duck", 1, (0.55, 0.42, 0.30), (0.10, 0.50, 0.20), (0.95, 0.75, 0.10), 0.38, 0.18, 0.05, 0.0, False),
    Species("swan", 1, (0.97, 0.97, 0.97), (0.97, 0.97, 0.97), (0.95, 0.45, 0.10), 0.40, 0.17, 0.35, 0.0, False),
    Species("heron", 1, (0.55, 0.60, 0.70), (0.85, 0.85, 0.90), (0.95, 0.85, 0.20), 0.26, 0.13, 0.40, 0.45, False),
    Species("flamingo", 1, (0.98, 0.50, 0.65), (0.98, 0.55, 0.70), (0.15, 0.15, 0.15), 0.26, 0.14, 0.45, 0.50, False),
)

# scene name -> place (0 land, 1 water, None: neither, seen only in pre-training)
SCENES = {
    "forest": 0, "bamboo": 0, "meadow": 0, "desert": 0,
    "ocean": 1, "lake": 1, "river": 1, "marsh": 1,
    "snow": None, "city": None,
}
SCENE_WORDS = {
    "forest": ["forest", "woods", "trees"], "bamboo": ["bamboo forest", "bamboo grove"],
    "meadow": ["meadow", "grassland", "field"], "desert": ["desert", "sand dunes"],
    "ocean": ["ocean", "sea", "waves"], "lake": ["lake", "pond"], "river": ["river", "stream"],
    "marsh": ["marsh", "wetland", "swamp"], "snow": ["snow", "snowy field"], "city": ["city", "street"],
}
# Words a caption may use that the world renders; the describe stage counts them in its preview.
RENDERED_WORDS = frozenset(
    w for words in SCENE_WORDS.values() for phrase in words for w in phrase.split()
) | frozenset({"land", "water", "sand", "grass", "waves", "sky", "dark", "bright", "blurry", "noisy"})

CAPTION_TEMPLATES = (
    "a photo of a {species}, a {cls}, in the {scene}.",
    "a {cls} in the {scene}.",
    "a {species} in the {scene}.",
    "a photo of a {species}.",
    "a photo of a {cls}.",
    "the {scene}.",
    "a {species} {place_phrase}.",
    "a {cls} {place_phrase}.",
    "a picture of a {species} ({cls}) near the {scene}.",
    "this is a picture of a {cls}.",
    "a {scene} scene with a {species}.",
    "a {cls} standing in the {scene}.",
)
PLACE_PHRASES = {0: ["on land", "on the ground"], 1: ["on water", "by the water"], None: ["outdoors"]}


def _grid(size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def render_scene(scene: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A scene as float RGB [size, size, 3] in [0, 1]; each scene has its own palette and texture."""
    yy, xx = _grid(size)
    img = np.zeros((size, size, 3), np.float32)
    jit = lambda c, s=0.06: np.clip(np.array(c, np.float32) + rng.normal(0, s, 3), 0, 1)
    horizon = rng.uniform(0.25, 0.45)
    sky = jit((0.60, 0.78, 0.95))
    if scene == "forest":
        img[:] = jit((0.10, 0.35, 0.12))
        for x0 in rng.uniform(0, 1, 5):
            img[np.abs(xx - x0) < 0.035] = jit((0.35, 0.22, 0.10))
    elif scene == "bamboo":
        img[:] = jit((0.55, 0.75, 0.30))
        for x0 in rng.uniform(0, 1, 7):
            img[np.abs(xx - x0) < 0.02] = jit((0.80, 0.85, 0.40))
        img[(np.sin(yy * 40 + rng.uniform(0, 6)) > 0.95)] *= 0.8
    elif scene == "meadow":
        img[:] = sky
        img[yy > horizon] = jit((0.40, 0.70, 0.20))
        dots = (rng.uniform(0, 1, (size, size)) > 0.96) & (yy > horizon)
        img[dots] = jit((0.95, 0.90, 0.20))
    elif scene == "desert":
        img[:] = jit((0.85, 0.75, 0.55))
        img[yy < horizon + 0.08 * np.sin(xx * 8 + rng.uniform(0, 6))] = sky
    elif scene == "ocean":
        img[:] = sky
        img[yy > horizon] = jit((0.05, 0.20, 0.55))
        waves = (np.sin(yy * 60 + xx * 6 + rng.uniform(0, 6)) > 0.85) & (yy > horizon)
        img[waves] = jit((0.85, 0.90, 0.95))
    elif scene == "lake":
        img[:] = jit((0.15, 0.40, 0.15))
        img[yy > horizon] = jit((0.25, 0.45, 0.65))
        img[(yy > horizon) & (np.sin(xx * 50 + rng.uniform(0, 6)) > 0.97)] *= 1.2
    elif scene == "river":
        img[:] = jit((0.30, 0.60, 0.25))
        band = np.abs(yy - (0.4 + 0.3 * xx + 0.1 * np.sin(xx * 6 + rng.uniform(0, 6)))) < 0.2
        img[band] = jit((0.20, 0.45, 0.75))
    elif scene == "marsh":
        img[:] = jit((0.30, 0.45, 0.50))
        for x0 in rng.uniform(0, 1, 9):
            reed = (np.abs(xx - x0) < 0.015) & (yy > rng.uniform(0.2, 0.6))
            img[reed] = jit((0.50, 0.55, 0.25))
    elif scene == "snow":
        img[:] = jit((0.70, 0.75, 0.82))
        img[yy > horizon] = jit((0.96, 0.96, 0.98), 0.02)
    elif scene == "city":
        img[:] = sky
        for x0 in np.arange(0, 1, 0.2) + rng.uniform(0, 0.1):
            top = rng.uniform(0.1, 0.6)
            img[(xx > x0) & (xx < x0 + 0.16) & (yy > top)] = jit((0.45, 0.45, 0.48), 0.08)
    else:
        raise ValueError(f"unknown scene {scene!r}")
    return np.clip(img + rng.normal(0, 0.03, img.shape).astype(np.float32), 0, 1)


def paste_bird(img: np.ndarray, sp: Species, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Draw a bird of species `sp` on `img` in place; `scale` is the sprite size over the image size."""
    size = img.shape[0]
    yy, xx = _grid(size)
    s = scale * rng.uniform(0.9, 1.1)
    cx = rng.uniform(0.25 + s / 3, 0.75 - s / 3 + 1e-6)
    cy = rng.uniform(0.35, 0.65)
    facing = rng.choice([-1.0, 1.0])
    dx, dy = (xx - cx) / s * facing, (yy - cy) / s
    colour = lambda c: np.clip(np.array(c, np.float32) * rng.uniform(0.9, 1.1), 0, 1)
    body = (dx / sp.length) ** 2 + (dy / sp.height) ** 2 < 1
    # legs below the body, then neck and head above its front end
    if sp.legs > 0:
        for lx in (-0.06, 0.06):
            leg = (np.abs(dx - lx) < 0.025) & (dy > 0) & (dy < sp.height + sp.legs)
            img[leg] = colour((0.25, 0.20, 0.15)) if sp.name != "flamingo" else colour((0.9, 0.4, 0.5))
    tail = (dx < -sp.length * 0.7) & (dx > -sp.length * 1.5) & (np.abs(dy + (0.12 if sp.tail_up else 0.0) + 0.5 * (dx + sp.length) * (1 if sp.tail_up else 0)) < 0.06)
    img[body | tail] = colour(sp.body)
    hx, hy = sp.length * 0.8, -sp.height - sp.neck
    if sp.neck > 0:
        neck = (np.abs(dx - hx) < 0.05) & (dy < 0) & (dy > hy)
        img[neck] = colour(sp.head)
    head = (dx - hx) ** 2 + (dy - hy) ** 2 < 0.11 ** 2
    img[head] = colour(sp.head)
    beak = (dx > hx + 0.08) & (dx < hx + 0.22) & (np.abs(dy - hy) < 0.04 - 0.25 * (dx - hx - 0.08))
    img[beak] = colour(sp.beak)
    eye = (dx - hx - 0.04) ** 2 + (dy - hy + 0.02) ** 2 < 0.025 ** 2
    img[eye] = 0.0
    return img


def render(sp: Species, scene: str, size: int, rng: np.random.Generator, scale: float = 0.5) -> np.ndarray:
    img = paste_bird(render_scene(scene, size, rng), sp, rng, scale)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def scenes_of(place):
    return [s for s, p in SCENES.items() if p == place]


def species_of(y):
    return [s for s in SPECIES if s.y == y]


def sample_groups(n: int, correlation: float | None, rng: np.random.Generator):
    """(y, place) pairs: `correlation` = P(place == y) with balanced classes; None = balanced groups."""
    if correlation is None:  # val/test: exactly balanced over the four groups
        groups = np.arange(n) % 4
        rng.shuffle(groups)
        return groups // 2, groups % 2
    y = rng.integers(0, 2, n)
    agree = rng.uniform(0, 1, n) < correlation
    return y, np.where(agree, y, 1 - y)


def generate_dataset(root: str | Path, n_train: int, n_val: int, n_test: int, train_correlation: float,
                     image_size: int = 32, seed: int = 0) -> pd.DataFrame:
    """Write a SynthBirds data set in the Waterbirds layout into `root` (atomically)."""
    rng = np.random.default_rng(seed)
    rows = []
    with atomic_dir(root) as tmp:
        sizes = {"train": (n_train, train_correlation), "val": (n_val, None), "test": (n_test, None)}
        for split, (n, corr) in sizes.items():
            ys, places = sample_groups(n, corr, rng)
            for y, place in zip(progress(ys, desc=f"SynthBirds {split}"), places):
                sp = rng.choice(species_of(y))
                scene = rng.choice(scenes_of(place))
                img_id = len(rows) + 1
                sp_idx = SPECIES.index(sp) + 1
                name = f"{sp_idx:03d}.{sp.name.capitalize()}/{sp.name.capitalize()}_{img_id:05d}.jpg"
                (tmp / name).parent.mkdir(exist_ok=True)
                Image.fromarray(render(sp, scene, image_size, rng)).save(tmp / name, quality=95)
                rows.append({"img_id": img_id, "img_filename": name, "y": int(y), "split": SPLITS[split],
                             "place": int(place), "place_filename": f"/{scene[0]}/{scene}/{img_id:08d}.jpg",
                             "species": sp.name, "scene": scene})
        df = pd.DataFrame(rows)
        df.to_csv(tmp / "metadata.csv", index=False)
    return df


def caption(sp: Species, scene: str, rng: np.random.Generator) -> str:
    t = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    return t.format(species=sp.name, cls=CLASSNAMES[sp.y], scene=rng.choice(SCENE_WORDS[scene]),
                    place_phrase=rng.choice(PLACE_PHRASES[SCENES[scene]]))


def generate_pretrain_set(path: str | Path, n: int, correlation: float, image_size: int = 32,
                          seed: int = 0, other_scenes: float = 0.1) -> None:
    """Captioned images for contrastive pre-training, saved as one .npz (images uint8, captions).

    A fraction `other_scenes` shows scenes that are neither land nor water; among the rest the
    scene type matches the class with probability `correlation` (a mild correlation, so that
    the zero-shot model is biased, as CLIP is on Waterbirds).
    """
    rng = np.random.default_rng(seed + 1_000_003)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    captions, species, scenes = [], [], []
    ys, places = sample_groups(n, correlation, rng)
    other = rng.uniform(0, 1, n) < other_scenes
    for i in progress(range(n), desc="pre-training set"):
        sp = rng.choice(species_of(ys[i]))
        scene = rng.choice(scenes_of(None if other[i] else places[i]))
        images[i] = render(sp, scene, image_size, rng)
        captions.append(caption(sp, scene, rng))
        species.append(sp.name)
        scenes.append(scene)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, captions=np.array(captions), species=np.array(species),
                     scenes=np.array(scenes), y=ys)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Generate the SynthBirds data set and its captioned pre-training set.")
    p.add_argument("--params", required=True, help="JSON of the config's data.synthetic section")
    p.add_argument("--root", required=True, help="output folder of the Waterbirds-layout data set")
    p.add_argument("--pretrain-out", required=True, help="output .npz of the captioned pre-training set")
    a = p.parse_args(argv)
    cfg = json.loads(a.params)
    df = generate_dataset(a.root, cfg["n_train"], cfg["n_val"], cfg["n_test"], cfg["train_correlation"],
                          cfg["image_size"], cfg["seed"])
    generate_pretrain_set(a.pretrain_out, cfg["n_pretrain"], cfg["pretrain_correlation"], cfg["image_size"], cfg["seed"])
    print(df.groupby(["split", "y", "place"]).size().to_string())


if __name__ == "__main__":
    main()
