"""SynthBirds: a procedurally generated stand-in for Waterbirds (DESIGN.md section 4).

Bird sprites of several species (each a landbird or a waterbird) pasted on scenes (land scenes,
water scenes and a few others), written in the exact Waterbirds on-disk layout, plus a separate
captioned pre-training set from the same world for the tiny CLIP.

Species differ in silhouette (body shape, neck, tail, legs, beak) and colours; scenes differ in
palette and texture, so that both the object and the background are visually learnable at 32x32.
The world also draws the nuisances an LLM names (stages.synthetic.nuisances: more scenes, textures on the
object, image-quality effects, drawing styles), which the pre-training captions mention, and holds
the 16 classes of the many-class source task (stages.synthetic.source), each with habitual scenes.

SynthBirds' own data set keeps its 8 land and water scenes and no nuisances unless asked
(`generate_dataset`'s texture and quality): with the defaults it is byte-identical to the first world's.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..datasets.waterbirds import SPLITS
from ..common.io import atomic_dir, atomic_path
from .nuisances import (PLACE_PHRASES, QUALITIES, SCENE_PREPOSITIONS, SCENE_WORDS, STYLES, TEXTURES,
                        apply_quality, apply_style, apply_texture, grid, render_scene)
from .vocabulary import a_or_an
from .nuisances import SCENES as WORLD_SCENES
from ..common.progress import progress

CLASSNAMES = ("landbird", "waterbird")
PLACES = ("land", "water")
# SynthBirds' scenes (name -> place), in the order its generator draws from: its land and water
# scenes, and the two that are neither (seen only in pre-training)
SCENES = {s: WORLD_SCENES[s] for s in ("forest", "bamboo", "meadow", "desert", "ocean", "lake",
                                       "river", "marsh", "snow", "city")}
# the pre-training set's scenes that carry no class correlation: every scene of the world but
# SynthBirds' land and water ones
OTHER_SCENES = [s for s in WORLD_SCENES if SCENES.get(s) is None]

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
    # The source task's extra species need more shapes; the defaults draw SynthBirds' eight exactly
    # as before (same pixels, same random draws).
    leg_colour: tuple = (0.25, 0.20, 0.15)
    upright: bool = False  # owls, penguins, woodpeckers: the body stands, `length` is vertical
    tail: float = 1.5  # where the tail ends, in body half-lengths behind the centre
    head_size: float = 0.11
    beak_len: float = 0.22  # the beak's tip, forward of the head's centre
    beak_w: float = 0.04  # the beak's half-width at its base ...
    beak_taper: float = 0.25  # ... narrowing by this per unit of length
    eye: float = 0.025
    wing: tuple | None = None  # a wing patch of another colour on the back
    belly: tuple | None = None  # a belly (a penguin's white front) of another colour


# The duck is a grey mallard drake: drawn brown, as it once was, it looked at 32 px like the
# world's brown landbirds (sparrow, owl, eagle) and the all-species teacher called 72% of ducks
# landbirds (zero-shot, scenes balanced); grey, 12%.
SPECIES = (
    Species("sparrow", 0, (0.55, 0.38, 0.22), (0.45, 0.30, 0.18), (0.3, 0.3, 0.3), 0.28, 0.20, 0.0, 0.10, True),
    Species("cardinal", 0, (0.85, 0.10, 0.10), (0.75, 0.05, 0.05), (0.95, 0.6, 0.1), 0.28, 0.20, 0.0, 0.10, True),
    Species("bluejay", 0, (0.25, 0.45, 0.90), (0.85, 0.85, 0.95), (0.1, 0.1, 0.1), 0.30, 0.18, 0.0, 0.10, True),
    Species("crow", 0, (0.08, 0.08, 0.10), (0.12, 0.12, 0.14), (0.2, 0.2, 0.2), 0.34, 0.18, 0.0, 0.12, False),
    Species("duck", 1, (0.62, 0.60, 0.58), (0.10, 0.50, 0.20), (0.95, 0.75, 0.10), 0.38, 0.18, 0.05, 0.0, False),
    Species("swan", 1, (0.97, 0.97, 0.97), (0.97, 0.97, 0.97), (0.95, 0.45, 0.10), 0.40, 0.17, 0.35, 0.0, False),
    Species("heron", 1, (0.55, 0.60, 0.70), (0.85, 0.85, 0.90), (0.95, 0.85, 0.20), 0.26, 0.13, 0.40, 0.45, False),
    Species("flamingo", 1, (0.98, 0.50, 0.65), (0.98, 0.55, 0.70), (0.15, 0.15, 0.15), 0.26, 0.14, 0.45, 0.50, False,
            leg_colour=(0.9, 0.4, 0.5)),
)
# the source task's other eight (stages.synthetic.source), each told apart at 32 px by shape and colour
EXTRA_SPECIES = (
    Species("owl", 0, (0.50, 0.38, 0.25), (0.58, 0.45, 0.30), (0.25, 0.20, 0.15), 0.26, 0.20, 0.0, 0.04, False,
            upright=True, head_size=0.17, eye=0.045, beak_len=0.14, belly=(0.85, 0.78, 0.60)),
    Species("eagle", 0, (0.30, 0.18, 0.08), (0.97, 0.97, 0.95), (0.98, 0.80, 0.10), 0.42, 0.19, 0.03, 0.08, False,
            leg_colour=(0.95, 0.80, 0.10), beak_w=0.06, beak_taper=0.35, wing=(0.20, 0.11, 0.04)),
    Species("parrot", 0, (0.10, 0.72, 0.20), (0.92, 0.15, 0.10), (0.95, 0.90, 0.80), 0.26, 0.16, 0.0, 0.08, False,
            tail=2.6, beak_w=0.06, beak_taper=0.4, wing=(0.15, 0.35, 0.92)),
    Species("woodpecker", 0, (0.08, 0.08, 0.08), (0.92, 0.10, 0.10), (0.40, 0.40, 0.40), 0.28, 0.15, 0.0, 0.06, False,
            upright=True, beak_len=0.30, beak_w=0.03, beak_taper=0.12, belly=(0.95, 0.95, 0.95)),
    Species("penguin", 1, (0.05, 0.05, 0.08), (0.05, 0.05, 0.08), (0.95, 0.55, 0.10), 0.32, 0.17, 0.0, 0.03, False,
            leg_colour=(0.95, 0.55, 0.10), upright=True, belly=(0.97, 0.97, 0.97)),
    Species("pelican", 1, (0.95, 0.95, 0.93), (0.95, 0.95, 0.93), (0.98, 0.70, 0.25), 0.36, 0.18, 0.12, 0.0, False,
            beak_len=0.48, beak_w=0.08, beak_taper=0.2, wing=(0.20, 0.20, 0.20)),
    Species("gull", 1, (0.97, 0.97, 0.97), (0.97, 0.97, 0.97), (0.98, 0.85, 0.10), 0.32, 0.17, 0.0, 0.10, False,
            leg_colour=(0.95, 0.75, 0.20), wing=(0.58, 0.62, 0.68)),
    Species("goose", 1, (0.50, 0.45, 0.38), (0.08, 0.08, 0.08), (0.10, 0.10, 0.10), 0.38, 0.19, 0.22, 0.10, False,
            leg_colour=(0.10, 0.10, 0.10), belly=(0.85, 0.82, 0.75)),
)
WORLD_SPECIES = SPECIES + EXTRA_SPECIES
# the source task's label order: class folder names, sorted (stages.synthetic.source.CLASSNAMES)
WORLD_CLASSNAMES = tuple(sorted(s.name for s in WORLD_SPECIES))
SPECIES_BY_NAME = {s.name: s for s in WORLD_SPECIES}
# Each class's habitual scenes, as photos of it are mostly taken in a few places. SynthBirds'
# species stay within their place (land or water), so that a world pre-trained on all 16 keeps
# the landbird-land / waterbird-water shortcut that makes its zero-shot model biased.
HABITS = {
    "sparrow": ("meadow", "garden"), "cardinal": ("forest", "branch"), "bluejay": ("bamboo", "forest"),
    "crow": ("meadow", "desert"), "duck": ("lake", "river"), "swan": ("lake", "marsh"),
    "heron": ("marsh", "river"), "flamingo": ("ocean", "lake"),
    "owl": ("forest", "branch", "snow"), "eagle": ("mountain", "sky"), "parrot": ("jungle", "branch"),
    "woodpecker": ("forest", "jungle"), "penguin": ("snow", "beach"), "pelican": ("ocean", "beach"),
    "gull": ("beach", "city"), "goose": ("lake", "meadow"),
}


def habitual_scene(name: str, habitual: bool, rng: np.random.Generator) -> str:
    """One of the class's habitual scenes, or (habitual False) one of all the others."""
    pool = HABITS[name] if habitual else [s for s in WORLD_SCENES if s not in HABITS[name]]
    return str(rng.choice(pool))


def unusual_scenes(name: str) -> list[str]:
    """Scenes a class is rarely seen in: neither habitual nor of its own place (the hard set's)."""
    y = SPECIES_BY_NAME[name].y
    return [s for s, place in WORLD_SCENES.items() if s not in HABITS[name] and place != y]


# ---- drawing one image -------------------------------------------------------------------------

@dataclass(frozen=True)
class Look:
    """How one image is drawn, besides its species: scene, nuisances, object size and opacity."""
    scene: str
    texture: str | None = None
    quality: str | None = None
    style: str | None = None
    scale: float = 0.5  # sprite size over image size
    contrast: float = 1.0  # object opacity over the scene (< 1: a camouflaged, low-contrast object)
    palette: tuple | None = None  # a permutation of the object's colour channels (renditions)

    @property
    def nuisances(self) -> dict:
        return {"texture": self.texture or "", "quality": self.quality or "", "style": self.style or ""}


def make_look(scene: str, texture=None, quality=None, style=None, scale: float = 0.5, **kw) -> Look:
    """A Look whose object size follows the framing qualities ("far away", "close-up")."""
    if quality is not None:
        scale *= QUALITIES[quality].scale
    return Look(scene, texture, quality, style, scale, **kw)


def draw_nuisances(rng: np.random.Generator, texture: float = 0.0, quality: float = 0.0,
                   style: float = 0.0) -> dict:
    """Independent draws: each kind present with its probability, then one of its kinds uniformly.
    A probability of 0 draws nothing from `rng` (so adding a kind never reshuffles the rest)."""
    out = {}
    for kind, p, table in (("texture", texture, TEXTURES), ("quality", quality, QUALITIES), ("style", style, STYLES)):
        out[kind] = str(rng.choice(list(table))) if p > 0 and rng.uniform() < p else None
    return out


def bird_layers(sp: Species, size: int, rng: np.random.Generator, scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sprite of species `sp` as (mask, colour) layers in painting order; `scale` is the
    sprite size over the image size."""
    yy, xx = grid(size)
    s = scale * rng.uniform(0.9, 1.1)
    lo, hi = 0.25 + s / 3, 0.75 - s / 3 + 1e-6
    cx = rng.uniform(min(lo, hi), max(lo, hi))  # a close-up sprite wider than the centre band
    cy = rng.uniform(0.35, 0.65)
    facing = rng.choice([-1.0, 1.0])
    dx, dy = (xx - cx) / s * facing, (yy - cy) / s
    colour = lambda c: np.clip(np.array(c, np.float32) * rng.uniform(0.9, 1.1), 0, 1)
    half_w, half_h = (sp.height, sp.length) if sp.upright else (sp.length, sp.height)
    body = (dx / half_w) ** 2 + (dy / half_h) ** 2 < 1
    layers = []
    # legs below the body, then neck and head above its front end
    if sp.legs > 0:
        for lx in (-0.06, 0.06):
            leg = (np.abs(dx - lx) < 0.025) & (dy > 0) & (dy < half_h + sp.legs)
            layers.append((leg, colour(sp.leg_colour)))
    if sp.upright:
        tail = np.zeros_like(body)
    else:
        tail = (dx < -sp.length * 0.7) & (dx > -sp.length * sp.tail) & (np.abs(dy + (0.12 if sp.tail_up else 0.0) + 0.5 * (dx + sp.length) * (1 if sp.tail_up else 0)) < 0.06)
    layers.append((body | tail, colour(sp.body)))
    if sp.wing is not None:
        wing = body & (((dx + 0.25 * half_w) / (0.65 * half_w)) ** 2 + ((dy + 0.1 * half_h) / (0.6 * half_h)) ** 2 < 1)
        layers.append((wing, colour(sp.wing)))
    if sp.belly is not None:
        belly = body & (((dx > 0) & (dy > -0.6 * half_h)) if sp.upright else (dy > 0.2 * half_h))
        layers.append((belly, colour(sp.belly)))
    hx, hy = (0.04, -half_h * 0.85 - sp.neck) if sp.upright else (sp.length * 0.8, -sp.height - sp.neck)
    if sp.neck > 0:
        neck = (np.abs(dx - hx) < 0.05) & (dy < 0) & (dy > hy)
        layers.append((neck, colour(sp.head)))
    head = (dx - hx) ** 2 + (dy - hy) ** 2 < sp.head_size ** 2
    layers.append((head, colour(sp.head)))
    beak = (dx > hx + 0.08) & (dx < hx + sp.beak_len) & (np.abs(dy - hy) < sp.beak_w - sp.beak_taper * (dx - hx - 0.08))
    layers.append((beak, colour(sp.beak)))
    eye = (dx - hx - 0.04) ** 2 + (dy - hy + 0.02) ** 2 < sp.eye ** 2
    layers.append((eye, np.zeros(3, np.float32)))
    return layers


def paint(img: np.ndarray, layers, palette: tuple | None = None) -> np.ndarray:
    """Paint the layers on `img` in place; returns the object's mask."""
    mask = np.zeros(img.shape[:2], bool)
    for m, c in layers:
        img[m] = c if palette is None else c[list(palette)]
        mask |= m
    return mask


def paste_bird(img: np.ndarray, sp: Species, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Draw a bird of species `sp` on `img` in place; `scale` is the sprite size over the image size."""
    paint(img, bird_layers(sp, img.shape[0], rng, scale))
    return img


def draw(sp: Species, look: Look, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(float RGB image in [0, 1], object mask): scene, sprite, texture, opacity, style, quality."""
    img = render_scene(look.scene, size, rng)
    background = img.copy() if look.contrast < 1 else None
    mask = paint(img, bird_layers(sp, size, rng, look.scale), look.palette)
    if look.texture is not None:
        apply_texture(img, mask, look.texture, rng)
    if background is not None:
        img[mask] = look.contrast * img[mask] + (1 - look.contrast) * background[mask]
    if look.style is not None:
        img = apply_style(img, look.style, rng)
    if look.quality is not None:
        img = apply_quality(img, look.quality, rng)
    return np.clip(img, 0, 1), mask


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def render_sample(sp: Species, look: Look, size: int, rng: np.random.Generator) -> np.ndarray:
    return to_uint8(draw(sp, look, size, rng)[0])


def render(sp: Species, scene: str, size: int, rng: np.random.Generator, scale: float = 0.5) -> np.ndarray:
    return render_sample(sp, Look(scene, scale=scale), size, rng)


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
                     image_size: int = 32, seed: int = 0, texture: float = 0.0, quality: float = 0.0) -> pd.DataFrame:
    """Write a SynthBirds data set in the Waterbirds layout into `root` (atomically).

    `texture` / `quality`: the probability that an image (any split) carries an object texture /
    an image-quality effect, independent of class and place; metadata.csv then names them
    (columns texture, quality). At 0 (the default) the set is the first world's, byte for byte.
    """
    rng = np.random.default_rng(seed)
    rows = []
    with atomic_dir(root) as tmp:
        sizes = {"train": (n_train, train_correlation), "val": (n_val, None), "test": (n_test, None)}
        for split, (n, corr) in sizes.items():
            ys, places = sample_groups(n, corr, rng)
            for y, place in zip(progress(ys, desc=f"SynthBirds {split}"), places):
                sp = rng.choice(species_of(y))
                scene = rng.choice(scenes_of(place))
                look = make_look(str(scene), **draw_nuisances(rng, texture, quality))
                img_id = len(rows) + 1
                sp_idx = SPECIES.index(sp) + 1
                name = f"{sp_idx:03d}.{sp.name.capitalize()}/{sp.name.capitalize()}_{img_id:05d}.jpg"
                (tmp / name).parent.mkdir(exist_ok=True)
                Image.fromarray(render_sample(sp, look, image_size, rng)).save(tmp / name, quality=95)
                row = {"img_id": img_id, "img_filename": name, "y": int(y), "split": SPLITS[split],
                       "place": int(place), "place_filename": f"/{scene[0]}/{scene}/{img_id:08d}.jpg",
                       "species": sp.name, "scene": scene}
                if texture or quality:
                    row.update(texture=look.texture or "", quality=look.quality or "")
                rows.append(row)
        df = pd.DataFrame(rows)
        df.to_csv(tmp / "metadata.csv", index=False)
    return df


# ---- captions ----------------------------------------------------------------------------------

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


def caption(sp: Species, scene: str, rng: np.random.Generator) -> str:
    """The caption of a plain image (no texture, quality or style): species, class and scene."""
    t = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    return fix_articles(t.format(species=sp.name, cls=CLASSNAMES[sp.y], scene=rng.choice(SCENE_WORDS[scene]),
                    place_phrase=rng.choice(PLACE_PHRASES[WORLD_SCENES[scene]])))


def fix_articles(text: str) -> str:
    """Articles fixed: "a eagle" becomes "an eagle" (the templates were written for names starting with a consonant)."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def scene_phrase(scene: str, rng: np.random.Generator) -> str:
    """Where the object is, e.g. "on the beach"; empty now and then, as real captions often are."""
    if rng.uniform() < 0.2:
        return ""
    prep = rng.choice(SCENE_PREPOSITIONS.get(scene, ("in", "near")))
    return f" {prep} the {rng.choice(SCENE_WORDS[scene])}"


def nuisance_caption(sp: Species, look: Look, rng: np.random.Generator) -> str:
    """A caption that names every nuisance of the image, in varied phrasing:
    "a blurry photo of a duck on the lake.", "a striped sparrow in the forest.",
    "a pencil sketch of a heron with spots.", "a photo of a landbird in the snow in dim light."."""
    name = str(rng.choice([sp.name, sp.name, CLASSNAMES[sp.y]]))  # the species twice as often
    if look.texture is not None:
        t = TEXTURES[look.texture]
        if rng.uniform() < 0.6:
            obj = a_or_an(f"{rng.choice(t.adjectives)} {name}")
        else:
            obj = f"{a_or_an(name)} with {rng.choice(t.phrases)}"
    else:
        obj = a_or_an(name)
    noun = rng.choice(STYLES[look.style].adjectives) if look.style else rng.choice(["photo", "picture", "image"])
    q = QUALITIES[look.quality] if look.quality else None
    suffix = ""
    if q is not None and rng.uniform() < 0.4:
        suffix = f" {rng.choice(q.phrases)}"
        head = a_or_an(f"{noun} of {obj}")
    elif q is not None:
        head = a_or_an(f"{rng.choice(q.adjectives)} {noun} of {obj}")
    elif look.style or rng.uniform() < 0.6:
        head = a_or_an(f"{noun} of {obj}")
    else:
        head = obj
    return f"{head}{scene_phrase(look.scene, rng)}{suffix}."


def caption_for(sp: Species, look: Look, rng: np.random.Generator) -> str:
    if look.texture or look.quality or look.style:
        return nuisance_caption(sp, look, rng)
    return caption(sp, look.scene, rng)


# ---- the captioned pre-training set ------------------------------------------------------------

# its parameters in the config's data.synthetic section, with their defaults
PRETRAIN_DEFAULTS = {
    "pretrain_texture": 0.3,  # P(an object texture), mentioned by the caption
    "pretrain_quality": 0.3,  # P(an image-quality effect), mentioned by the caption
    "pretrain_style": 0.1,  # P(a sketch, cartoon or painting), mentioned by the caption
    "pretrain_other_scenes": 0.1,  # synthbirds world: P(a scene with no class correlation)
    "pretrain_world": "synthbirds",  # "synthbirds": its 8 species; "all": the 16 source classes
}


def generate_pretrain_set(path: str | Path, n: int, correlation: float, image_size: int = 32,
                          seed: int = 0, other_scenes: float = 0.1, texture: float = 0.3,
                          quality: float = 0.3, style: float = 0.1, world: str = "synthbirds") -> None:
    """Captioned images for contrastive pre-training, saved as one .npz: images uint8
    [n, size, size, 3], captions, species, scenes, y, and textures, qualities, styles ("" = none).

    world "synthbirds": SynthBirds' 8 species; y is the class (0 landbird, 1 waterbird). A fraction
    `other_scenes` shows a scene with no class correlation (OTHER_SCENES: those neither land nor
    water, and the world's land and water scenes that SynthBirds does not use); among the rest the
    scene type matches the class with probability `correlation` (a mild correlation, so that the
    zero-shot model is biased, as CLIP is on Waterbirds).
    world "all": the 16 classes of the source task, uniformly; y is the index in
    WORLD_CLASSNAMES; the scene is one of the class's habitual ones (HABITS) with probability
    `correlation`, else any other scene. `other_scenes` is not used.
    Each image independently carries a texture, a quality effect and a style with the given
    probabilities, and its caption then names them.
    """
    if world not in ("synthbirds", "all"):
        raise ValueError(f"pre-training world must be 'synthbirds' or 'all', got {world!r}")
    rng = np.random.default_rng(seed + 1_000_003)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    captions, species, scenes, nuisances = [], [], [], []
    if world == "synthbirds":
        ys, places = sample_groups(n, correlation, rng)
        other = rng.uniform(0, 1, n) < other_scenes
    else:
        ys = rng.integers(0, len(WORLD_CLASSNAMES), n)
    for i in progress(range(n), desc="pre-training set"):
        if world == "synthbirds":
            sp = rng.choice(species_of(ys[i]))
            scene = str(rng.choice(OTHER_SCENES if other[i] else scenes_of(places[i])))
        else:
            sp = SPECIES_BY_NAME[WORLD_CLASSNAMES[ys[i]]]
            scene = habitual_scene(sp.name, rng.uniform() < correlation, rng)
        look = make_look(scene, **draw_nuisances(rng, texture, quality, style))
        images[i] = render_sample(sp, look, image_size, rng)
        captions.append(caption_for(sp, look, rng))
        species.append(sp.name)
        scenes.append(scene)
        nuisances.append(look.nuisances)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, captions=np.array(captions), species=np.array(species),
                     scenes=np.array(scenes), y=ys,
                     **{plural: np.array([d[k] for d in nuisances])
                        for k, plural in (("texture", "textures"), ("quality", "qualities"), ("style", "styles"))})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Generate the SynthBirds data set and its captioned pre-training set.")
    p.add_argument("--params", required=True, help="JSON of the config's data.synthetic section")
    p.add_argument("--root", required=True, help="output folder of the Waterbirds-layout data set")
    p.add_argument("--pretrain-out", required=True, help="output .npz of the captioned pre-training set")
    a = p.parse_args(argv)
    cfg = {"texture": 0.0, "quality": 0.0, **PRETRAIN_DEFAULTS, **json.loads(a.params)}
    df = generate_dataset(a.root, cfg["n_train"], cfg["n_val"], cfg["n_test"], cfg["train_correlation"],
                          cfg["image_size"], cfg["seed"], texture=cfg["texture"], quality=cfg["quality"])
    generate_pretrain_set(a.pretrain_out, cfg["n_pretrain"], cfg["pretrain_correlation"], cfg["image_size"], cfg["seed"],
                          other_scenes=cfg["pretrain_other_scenes"], texture=cfg["pretrain_texture"],
                          quality=cfg["pretrain_quality"], style=cfg["pretrain_style"], world=cfg["pretrain_world"])
    print(df.groupby(["split", "y", "place"]).size().to_string())


if __name__ == "__main__":
    main()
