"""The synthetic world's captions and the captioned pre-training set of the tiny CLIP: caption
templates, captions that name the species, class, scene and every nuisance of an image, and
generate_pretrain_set (SynthBirds' 8 species or all 16 of the source task).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..common.io import atomic_path
from ..common.progress import progress
from .groups import CLASSNAMES, OTHER_SCENES, sample_groups, scenes_of, species_of
from .quality import QUALITIES
from .scenes import PLACE_PHRASES, SCENE_PREPOSITIONS, SCENE_WORDS
from .scenes import SCENES as WORLD_SCENES
from .source import PALETTES
from .species import (SPECIES_BY_NAME, WORLD_CLASSNAMES, Look, Species, draw_nuisances, habitual_scene,
                      make_look, render_sample)
from .styles import STYLES
from .textures import TEXTURES
from .vocabulary import a_or_an


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


# the share of renditions whose caption names their style. The web captions many a drawing by its
# subject alone, and that is what lets a photo prompt ("a photo of a {}.") find sketches: every
# rendition named, the teacher read 16.8% of fresh sketches with it; 30% unnamed, 63.4% (2000
# steps, the same world otherwise).
STYLE_NAMED = 0.7


def nuisance_caption(sp: Species, look: Look, rng: np.random.Generator) -> str:
    """A caption that names every nuisance of the image, in varied phrasing:
    "a blurry photo of a duck on the lake.", "a striped sparrow in the forest.",
    "a pencil sketch of a heron with spots.", "a photo of a landbird in the snow in dim light."."""
    # the species twice as often; always in a rendition, where only the bird's shape tells it apart
    name = sp.name if look.style else str(rng.choice([sp.name, sp.name, CLASSNAMES[sp.y]]))
    if look.texture is not None:
        t = TEXTURES[look.texture]
        if rng.uniform() < 0.6:
            obj = a_or_an(f"{rng.choice(t.adjectives)} {name}")
        else:
            obj = f"{a_or_an(name)} with {rng.choice(t.phrases)}"
    else:
        obj = a_or_an(name)
    if look.style is None:
        noun = rng.choice(["photo", "picture", "image"])
    elif rng.uniform() < STYLE_NAMED:
        noun = rng.choice(STYLES[look.style].adjectives)
    else:  # a drawing's caption that names only the bird
        noun = rng.choice(["picture", "image"])
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
    """An image's caption: `nuisance_caption` when its Look has a texture, quality or style, else
    the plain `caption`."""
    if look.texture or look.quality or look.style:
        return nuisance_caption(sp, look, rng)
    return caption(sp, look.scene, rng)


# ---- the captioned pre-training set ------------------------------------------------------------

# its parameters in the config's data.synthetic section, with their defaults
PRETRAIN_DEFAULTS = {
    "pretrain_texture": 0.3,  # P(an object texture), mentioned by the caption
    "pretrain_quality": 0.3,  # P(an image-quality effect), mentioned by the caption
    "pretrain_style": 0.1,  # P(a sketch, cartoon or painting), mentioned by the caption
    "pretrain_palette": 0.0,  # P(other colours | a cartoon or painting), as synth_rendition draws them
    "pretrain_other_scenes": 0.1,  # synthbirds world: P(a scene with no class correlation)
    "pretrain_world": "synthbirds",  # "synthbirds": its 8 species; "all": the 16 source classes
}


def generate_pretrain_set(path: str | Path, n: int, correlation: float, image_size: int = 32,
                          seed: int = 0, other_scenes: float = 0.1, texture: float = 0.3,
                          quality: float = 0.3, style: float = 0.1, world: str = "synthbirds",
                          palette: float = 0.0) -> None:
    """Captioned images for contrastive pre-training, saved as one .npz: images uint8
    [n, size, size, 3], captions, species, scenes, y, and textures, qualities, styles and palettes
    (the object's new channels, e.g. "brg"; "" = none).

    world "synthbirds": SynthBirds' 8 species; y is the class (0 landbird, 1 waterbird). A fraction
    `other_scenes` shows a scene with no class correlation (OTHER_SCENES: those neither land nor
    water, and the world's land and water scenes that SynthBirds does not use); among the rest the
    scene type matches the class with probability `correlation` (a mild correlation, so that the
    zero-shot model is biased, as CLIP is on Waterbirds).
    world "all": the 16 classes of the source task, uniformly; y is the index in
    WORLD_CLASSNAMES; the scene is one of the class's habitual ones (HABITS) with probability
    `correlation`, else any other scene. `other_scenes` is not used.
    Each image independently carries a texture, a quality effect and a style with the given
    probabilities, and its caption then names them. A cartoon or painting has its object's colour
    channels permuted with probability `palette` (renditions draw birds in any colour, so the
    teacher must know them by shape; the caption says nothing of it).
    """
    if world not in ("synthbirds", "all"):
        raise ValueError(f"pre-training world must be 'synthbirds' or 'all', got {world!r}")
    rng = np.random.default_rng(seed + 1_000_003)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    captions, species, scenes, nuisances, palettes = [], [], [], [], []
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
        if palette > 0 and look.style in ("cartoon", "painting") and rng.uniform() < palette:
            look = make_look(scene, look.texture, look.quality, look.style, palette=PALETTES[rng.integers(len(PALETTES))])
        images[i] = render_sample(sp, look, image_size, rng)
        captions.append(caption_for(sp, look, rng))
        palettes.append("".join("rgb"[c] for c in look.palette) if look.palette else "")
        species.append(sp.name)
        scenes.append(scene)
        nuisances.append(look.nuisances)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=images, captions=np.array(captions), species=np.array(species),
                     scenes=np.array(scenes), y=ys, palettes=np.array(palettes),
                     **{plural: np.array([d[k] for d in nuisances])
                        for k, plural in (("texture", "textures"), ("quality", "qualities"), ("style", "styles"))})
