"""The synthetic world's species and how one image of a bird is drawn: Species, SynthBirds' eight
(SPECIES) and the source task's eight more (EXTRA_SPECIES), their habitual scenes (HABITS), the Look
of an image (scene, nuisances, object size and opacity) and the sprite drawing and rendering.

Species differ in silhouette (body shape, neck, tail, legs, beak) and colours; scenes differ in
palette and texture, so that both the object and the background are visually learnable at 32x32.
The world also draws the nuisances an LLM names (stages.synthetic.scenes, .textures, .quality,
.styles: more scenes, textures on the object, image-quality effects, drawing styles), and holds
the 16 classes of the many-class source task (stages.synthetic.source), each with habitual scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import grid
from .quality import QUALITIES, apply_quality
from .scenes import SCENES as WORLD_SCENES
from .scenes import render_scene
from .styles import STYLES, apply_style
from .textures import TEXTURES, apply_texture


@dataclass(frozen=True)
class Species:
    """One bird species: its class and what its sprite looks like (colours, proportions, shape)."""
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
    crest: float = 0.0  # a crest's height above the head (cardinals and jays)


# The duck is a grey mallard drake: drawn brown, as it once was, it looked at 32 px like the
# world's brown landbirds (sparrow, owl, eagle) and the all-species teacher called 72% of ducks
# landbirds (zero-shot, scenes balanced); grey, 12%. The blue jay likewise: blue under a white
# head, it read as a waterbird (the water's blue, the heron's and the white waterbirds' colours)
# and the teacher called 59% of SynthBirds' blue jays waterbirds, even on meadows; with a white
# belly, 76-80%. Blue with a black head and wings (a Steller's jay), 28%.
# Each has its own silhouette as well, since a sketch keeps shapes only: drawn alike and told apart
# by colour, the sparrow and the cardinal were one bird in pencil, and the teacher read 15% of the
# source task's sketches. The cardinal's crest, the jay's smaller crest and long straight tail, the
# sparrow's round body and finch's bill, the crow's heavy bill; the heron's dagger bill against the
# flamingo's short one on longer legs and neck.
SPECIES = (
    Species("sparrow", 0, (0.55, 0.38, 0.22), (0.45, 0.30, 0.18), (0.3, 0.3, 0.3), 0.25, 0.19, 0.0, 0.10, True,
            beak_len=0.18, beak_w=0.05, beak_taper=0.4),
    Species("cardinal", 0, (0.85, 0.10, 0.10), (0.75, 0.05, 0.05), (0.95, 0.6, 0.1), 0.28, 0.20, 0.0, 0.10, True,
            tail=2.1, beak_w=0.05, beak_taper=0.4, crest=0.16),
    Species("bluejay", 0, (0.20, 0.40, 0.90), (0.06, 0.06, 0.10), (0.1, 0.1, 0.1), 0.30, 0.18, 0.0, 0.10, False,
            wing=(0.06, 0.06, 0.12), tail=2.3, crest=0.10),
    Species("crow", 0, (0.08, 0.08, 0.10), (0.12, 0.12, 0.14), (0.2, 0.2, 0.2), 0.36, 0.19, 0.0, 0.14, False,
            beak_len=0.30, beak_w=0.06, beak_taper=0.22),
    Species("duck", 1, (0.62, 0.60, 0.58), (0.10, 0.50, 0.20), (0.95, 0.75, 0.10), 0.38, 0.18, 0.05, 0.0, False),
    Species("swan", 1, (0.97, 0.97, 0.97), (0.97, 0.97, 0.97), (0.95, 0.45, 0.10), 0.40, 0.17, 0.35, 0.0, False),
    Species("heron", 1, (0.55, 0.60, 0.70), (0.85, 0.85, 0.90), (0.95, 0.85, 0.20), 0.26, 0.13, 0.40, 0.40, False,
            beak_len=0.38, beak_w=0.035, beak_taper=0.08),
    Species("flamingo", 1, (0.98, 0.50, 0.65), (0.98, 0.55, 0.70), (0.15, 0.15, 0.15), 0.24, 0.14, 0.50, 0.58, False,
            leg_colour=(0.9, 0.4, 0.5), beak_len=0.17, beak_w=0.05),
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
        """The metadata columns texture, quality and style, "" for none."""
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
    if sp.crest > 0:  # a triangle rising backwards from the crown
        top = hy - sp.head_size - sp.crest
        t = (dy - top) / (0.6 * sp.head_size + sp.crest)
        head |= (t >= 0) & (t <= 1) & (np.abs(dx - (hx - 0.07 + 0.04 * t)) < 0.065 * t)
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
        img = apply_style(img, look.style, rng, mask)
    if look.quality is not None:
        img = apply_quality(img, look.quality, rng)
    return np.clip(img, 0, 1), mask


def to_uint8(img: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as uint8, clipped first."""
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def render_sample(sp: Species, look: Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of `sp` drawn as `look`, uint8 [size, size, 3]."""
    return to_uint8(draw(sp, look, size, rng)[0])


def render(sp: Species, scene: str, size: int, rng: np.random.Generator, scale: float = 0.5) -> np.ndarray:
    """A plain image of `sp` in `scene` (no nuisance), uint8 [size, size, 3]; `scale`: sprite size over
    image size."""
    return render_sample(sp, Look(scene, scale=scale), size, rng)
