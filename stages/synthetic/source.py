"""The synthetic world's many-class source task (the ImageNet stand-in) and its shifted test sets.

Sixteen bird classes (SynthBirds' eight species and eight more, stages.synthetic.species.WORLD_SPECIES),
each photographed mostly in a few habitual scenes (stages.synthetic.species.HABITS), as natural
photos are: fine-tuning on it can learn the scene as a shortcut. Its shifted sets mirror the paper's
evaluation sets, and a scene-classification set stands in for SUN397 (a zero-shot target whose
classes are what the source task's shortcut is made of). Every set is an ImageFolder tree, read by
the `imagefolder` reader (stages.datasets.imagefolder); class folder = class name, sorted = label
order (CLASSNAMES; the scenes set's SCENE_CLASSNAMES):

    ROOT/source/train/<class>/<class>_NNNNN.jpg   train: P(habitual scene) = habitual
    ROOT/source/val/<class>/...                   val: the same distribution
    ROOT/v2/test/<class>/...                      ImageNet-V2: a fresh draw of that distribution
    ROOT/sketch/test/<class>/...                  ImageNet-Sketch: grey pencil sketches (1 channel)
    ROOT/rendition/test/<class>/...               ImageNet-R: cartoons and paintings, half in other
                                                  colours, half with an object texture
    ROOT/hard/test/<class>/...                    ImageNet-A / ObjectNet: one difficulty per image
                                                  (column `hard`): "unusual_scene", a plain object in
                                                  a scene its class is never photographed in (neither
                                                  habitual nor of its place; a share hard_unusual of
                                                  each class); the rest halved between "small"
                                                  (size hard_scale) and "low_contrast" (camouflaged,
                                                  opacity hard_contrast) objects in habitual scenes
    ROOT/scenes/test/<scene>/...                  SUN397: the class is the scene, named by the first
                                                  word a caption uses for it (SCENE_WORDS; "tree
                                                  branch" as folder tree_branch, read back "tree
                                                  branch"); balanced over all the world's scenes,
                                                  each with a plain bird of a random species
    ROOT/<set>/metadata.csv    one row per image: path (relative to ROOT/<set>), split, label, class,
                               species (scenes only: the bird), scene, habitual, texture, quality,
                               style ("" = none), scale, contrast, palette (renditions: the object's
                               new channels, e.g. "brg" = red drawn from blue), hard (its kind, or "")
    ROOT/<set>/params.json     the parameters it was drawn with

Classes are balanced in every set (counts differ by at most one). Every set is drawn from its own
random stream of `seed` (seed, index in SETS: a new set goes last), so each is deterministic and
regenerating or adding one leaves the others alone.

`hard` mixes three kinds of difficulty (a third each, exact per class): a plain bird in an unusual
scene, and a small or a faint bird in one of its habitual scenes. Every image in an unusual scene
and small or faint was below chance for the demo's teacher, which reads the scene far more than
the bird.

    python -m stages.synthetic.source --params '{"n_train": 4000}' --root data/synthsource [--sets v2,hard]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..common.io import atomic_dir
from ..common.progress import progress
from .scenes import SCENE_WORDS
from .scenes import SCENES as WORLD_SCENES
from .species import (HABITS, SPECIES_BY_NAME, WORLD_CLASSNAMES, Look, draw_nuisances, habitual_scene, make_look,
                      render_sample, unusual_scenes)

CLASSNAMES = WORLD_CLASSNAMES  # label order: sorted class folder names


def scene_folders() -> dict[str, str]:
    """Scene key -> the scenes set's class folder: the first word a caption uses for the scene
    (SCENE_WORDS), spaces as "_" (the imagefolder reader reads them back as spaces)."""
    folders = {scene: SCENE_WORDS[scene][0].strip().replace(" ", "_") for scene in WORLD_SCENES}
    bad = [f for f in folders.values() if not f or "/" in f or f.startswith(".")]
    if bad or len(set(folders.values())) != len(folders):
        raise ValueError(f"the scenes' first caption words must be unique folder names, got {folders}")
    return folders


SCENE_FOLDERS = scene_folders()
SCENE_CLASSNAMES = tuple(sorted(SCENE_FOLDERS.values()))  # the scenes set's label order
SCENE_OF_FOLDER = {f: s for s, f in SCENE_FOLDERS.items()}

# the parameters (the config's section for the source world), with their defaults
DEFAULTS = {
    "image_size": 32,
    "seed": 0,
    "n_train": 4000,  # source/train images, balanced over the 16 classes
    "n_val": 800,  # source/val images
    "habitual": 0.9,  # P(one of the class's habitual scenes) in source and v2 (exact per class)
    "texture": 0.1,  # P(an object texture) in source and v2
    "quality": 0.1,  # P(an image-quality effect) in source and v2
    "n_v2": 1000,
    "n_sketch": 1000,
    "n_rendition": 1000,
    "n_hard": 1000,
    "n_scenes": 1000,  # scenes/test images, balanced over the scenes
    "rendition_texture": 0.5,  # P(an object texture) in rendition
    "rendition_palette": 0.5,  # P(other colours) in rendition (ImageNet-R's are often in their own)
    "hard_unusual": 1 / 3,  # share of hard's images with a plain object in an unusual scene (exact per class)
    "hard_scale": 0.3,  # object size in hard's small-object kind (the usual: 0.5)
    "hard_contrast": 0.35,  # object opacity in hard's low-contrast kind (the usual: 1)
}
PROBABILITIES = ("habitual", "texture", "quality", "rendition_texture", "rendition_palette", "hard_unusual", "hard_contrast")
COUNTS = ("n_train", "n_val", "n_v2", "n_sketch", "n_rendition", "n_hard", "n_scenes")
# the sets, in the order that names their random streams: a new set goes last
SETS = ("source", "v2", "sketch", "rendition", "hard", "scenes")
HARD_KINDS = ("unusual_scene", "small", "low_contrast")
RENDITION_STYLES = ("cartoon", "painting")
# the five channel orders that change an object's colours (the identity left out)
PALETTES = tuple(p for p in itertools.permutations(range(3)) if p != (0, 1, 2))


def with_defaults(params: dict | None) -> dict:
    """DEFAULTS overridden by `params`; unknown keys and impossible values are errors."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown source-world parameter(s) {unknown}; known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    for k in PROBABILITIES:
        if not 0 <= p[k] <= 1:
            raise ValueError(f"source-world parameter {k} must be in [0, 1], got {p[k]!r}")
    for k in COUNTS:
        if not isinstance(p[k], int) or p[k] < 0:
            raise ValueError(f"source-world parameter {k} must be a count (an integer >= 0), got {p[k]!r}")
    if p["image_size"] < 16 or not 0 < p["hard_scale"] <= 1:
        raise ValueError("source-world parameters: image_size must be >= 16 and hard_scale in (0, 1]")
    return p


def stream(params: dict, name: str) -> np.random.Generator:
    """The random stream of one set: independent of the others' sizes and draws."""
    return np.random.default_rng([params["seed"], SETS.index(name)])


def balanced_labels(n: int, rng: np.random.Generator, n_classes: int = len(CLASSNAMES)) -> np.ndarray:
    """n labels cycling through the classes (their counts differ by at most one), shuffled by `rng`."""
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    return labels


def exact_share(labels: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """A flag set on exactly round(p * n_c) randomly chosen images of each class c."""
    flags = np.zeros(len(labels), bool)
    for c in range(len(CLASSNAMES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        flags[idx[:int(round(p * len(idx)))]] = True
    return flags


# ---- what each set draws: (label, Look, extra metadata) per image -------------------------------

def scene_draws(n: int, params: dict, rng: np.random.Generator) -> list[tuple[int, str, bool]]:
    """(label, scene, habitual) of n images: balanced classes, each in one of its habitual scenes
    with probability `habitual` (exactly round(habitual * n_c) of its n_c images)."""
    labels = balanced_labels(n, rng)
    habit = exact_share(labels, params["habitual"], rng)
    return [(int(y), habitual_scene(CLASSNAMES[y], bool(h), rng), bool(h)) for y, h in zip(labels, habit)]


def natural_plan(n: int, params: dict, rng: np.random.Generator, style: str | None = None) -> list[tuple[int, Look, dict]]:
    """The source distribution: textures and quality effects at their rates, or, given a style,
    every image in that style and nothing else."""
    plan = []
    for y, scene, h in scene_draws(n, params, rng):
        nuisances = draw_nuisances(rng, params["texture"], params["quality"]) if style is None else {"style": style}
        plan.append((y, make_look(scene, **nuisances), {"habitual": h}))
    return plan


def sketch_plan(n: int, params: dict, rng: np.random.Generator) -> list[tuple[int, Look, dict]]:
    """ImageNet-Sketch: the source distribution's scenes, every image a sketch and nothing else."""
    return natural_plan(n, params, rng, style="sketch")


def rendition_plan(n: int, params: dict, rng: np.random.Generator) -> list[tuple[int, Look, dict]]:
    """ImageNet-R: every image a rendition in a random RENDITION_STYLES style, textured at rate
    `rendition_texture`, its colours permuted at rate `rendition_palette`."""
    plan = []
    for y, scene, h in scene_draws(n, params, rng):
        texture = draw_nuisances(rng, texture=params["rendition_texture"])["texture"]
        style = str(rng.choice(RENDITION_STYLES))
        palette = PALETTES[rng.integers(len(PALETTES))] if rng.uniform() < params["rendition_palette"] else None
        look = Look(scene, texture=texture, style=style, palette=palette)
        plan.append((y, look, {"habitual": h}))
    return plan


# the shifts whose images are renditions, not photos (the teacher's rendition check draws them too)
RENDITION_SETS = {"sketch": sketch_plan, "rendition": rendition_plan}


def hard_kinds(labels: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Each image's kind of difficulty (HARD_KINDS): exactly round(hard_unusual * n_c) of each
    class's n_c images "unusual_scene", the rest halved between "small" and "low_contrast"."""
    unusual = exact_share(labels, params["hard_unusual"], rng)
    rest = np.flatnonzero(~unusual)
    small = np.zeros(len(labels), bool)
    small[rest] = exact_share(labels[rest], 0.5, rng)
    return np.where(unusual, "unusual_scene", np.where(small, "small", "low_contrast"))


def hard_plan(n: int, params: dict, rng: np.random.Generator) -> list[tuple[int, Look, dict]]:
    """ImageNet-A / ObjectNet: one difficulty per image. An "unusual_scene" image is a plain object
    in a scene its class is never photographed in (neither habitual nor of its place); a "small"
    or "low_contrast" one is a small or faint (camouflaged) object in one of its habitual scenes."""
    labels = balanced_labels(n, rng)
    plan = []
    for y, kind in zip(labels, hard_kinds(labels, params, rng)):
        name = CLASSNAMES[y]
        if kind == "unusual_scene":
            look = Look(str(rng.choice(unusual_scenes(name))))
        else:
            scene = habitual_scene(name, True, rng)
            look = Look(scene, scale=params["hard_scale"]) if kind == "small" else Look(scene, contrast=params["hard_contrast"])
        plan.append((int(y), look, {"habitual": kind != "unusual_scene", "hard": str(kind)}))
    return plan


def scenes_plan(n: int, params: dict, rng: np.random.Generator) -> list[tuple[int, Look, dict]]:
    """SUN397: the class is the scene (balanced over SCENE_CLASSNAMES), each with a plain bird of a
    uniformly random species; `habitual` says whether the scene is one of that species' habits."""
    plan = []
    for y in balanced_labels(n, rng, len(SCENE_CLASSNAMES)):
        scene = SCENE_OF_FOLDER[SCENE_CLASSNAMES[y]]
        species = CLASSNAMES[rng.integers(len(CLASSNAMES))]
        plan.append((int(y), Look(scene), {"habitual": scene in HABITS[species], "species": species}))
    return plan


# ---- writing -----------------------------------------------------------------------------------

def save(img: np.ndarray, path: Path) -> None:
    """Write a uint8 image [H, W, 3] to `path` (format by suffix; JPEG quality 95)."""
    # a grey image is saved with one channel, so that its channels read back exactly equal
    grey = bool((img == img[..., :1]).all())
    Image.fromarray(img[..., 0] if grey else img, "L" if grey else "RGB").save(path, quality=95)


def write_set(root: str | Path, name: str, splits: dict[str, list], params: dict,
              rng: np.random.Generator, classes=CLASSNAMES) -> pd.DataFrame:
    """Render each split's plan into `root/<split>/<class>/` atomically, with metadata.csv and
    params.json; every class folder exists even when a split has no image of it. The class is
    the bird's species unless the plan names the species (extra["species"], then a "species" column)."""
    rows = []
    with atomic_dir(root) as tmp:
        for split, plan in splits.items():
            for cls in classes:
                (tmp / split / cls).mkdir(parents=True)
            for y, look, extra in progress(plan, desc=f"source world {name} {split}"):
                cls = classes[y]
                species = {"species": extra["species"]} if "species" in extra else {}
                path = f"{split}/{cls}/{cls}_{len(rows) + 1:05d}.jpg"
                sp = SPECIES_BY_NAME[extra.get("species", cls)]
                save(render_sample(sp, look, params["image_size"], rng), tmp / path)
                rows.append({"path": path, "split": split, "label": y, "class": cls, **species, "scene": look.scene,
                             "habitual": extra.get("habitual"), **look.nuisances, "scale": look.scale,
                             "contrast": look.contrast,
                             "palette": "".join("rgb"[c] for c in look.palette) if look.palette else "",
                             "hard": extra.get("hard", "")})
        df = pd.DataFrame(rows)
        df.to_csv(tmp / "metadata.csv", index=False)
        (tmp / "params.json").write_text(json.dumps({"set": name, **params}, indent=2, sort_keys=True) + "\n")
    return df


def generate_source(root: str | Path, params: dict | None = None) -> pd.DataFrame:
    """root/train and root/val: the source task (class-scene correlated, some nuisances)."""
    p = with_defaults(params)
    rng = stream(p, "source")
    splits = {"train": natural_plan(p["n_train"], p, rng), "val": natural_plan(p["n_val"], p, rng)}
    return write_set(root, "source", splits, p, rng)


def generate_v2(root: str | Path, params: dict | None = None) -> pd.DataFrame:
    """root/test: a fresh draw of the source distribution (its own random stream)."""
    p = with_defaults(params)
    rng = stream(p, "v2")
    return write_set(root, "v2", {"test": natural_plan(p["n_v2"], p, rng)}, p, rng)


def generate_sketch(root: str | Path, params: dict | None = None) -> pd.DataFrame:
    """root/test: grey pencil sketches of source-like images (habitual scenes as in source)."""
    p = with_defaults(params)
    rng = stream(p, "sketch")
    return write_set(root, "sketch", {"test": sketch_plan(p["n_sketch"], p, rng)}, p, rng)


def generate_rendition(root: str | Path, params: dict | None = None) -> pd.DataFrame:
    """root/test: cartoons and paintings, a share rendition_palette of their objects in other colours
    and a share rendition_texture with a texture."""
    p = with_defaults(params)
    rng = stream(p, "rendition")
    return write_set(root, "rendition", {"test": rendition_plan(p["n_rendition"], p, rng)}, p, rng)


def generate_hard(root: str | Path, params: dict | None = None) -> pd.DataFrame:
    """root/test: one difficulty per image: an unusual scene, a small object or a faint one."""
    p = with_defaults(params)
    rng = stream(p, "hard")
    return write_set(root, "hard", {"test": hard_plan(p["n_hard"], p, rng)}, p, rng)


def generate_scenes(root: str | Path, params: dict | None = None) -> pd.DataFrame:
    """root/test/<scene word>/: scene classification (SUN397's stand-in), a random bird in each."""
    p = with_defaults(params)
    rng = stream(p, "scenes")
    return write_set(root, "scenes", {"test": scenes_plan(p["n_scenes"], p, rng)}, p, rng, SCENE_CLASSNAMES)


GENERATORS = {"source": generate_source, "v2": generate_v2, "sketch": generate_sketch,
              "rendition": generate_rendition, "hard": generate_hard, "scenes": generate_scenes}


def generate_all(root: str | Path, params: dict | None = None, sets=SETS) -> dict[str, pd.DataFrame]:
    """Write the named sets (all by default) to root/<set>."""
    with_defaults(params)  # fail before writing anything
    return {name: GENERATORS[name](Path(root) / name, params) for name in sets}


def main(argv=None) -> None:
    """The command line: write the chosen sets under --root, then print each one's size and share of
    habitual scenes."""
    p = argparse.ArgumentParser(description="Generate the synthetic world's source task and its shifted test sets.")
    p.add_argument("--params", default="{}", help=f"JSON of parameters overriding the defaults: {json.dumps(DEFAULTS)}")
    p.add_argument("--root", required=True, help="output folder: ROOT/<set> for each set (" + ", ".join(SETS) + ")")
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated subset of the sets to (re)write")
    a = p.parse_args(argv)
    sets = [s for s in a.sets.split(",") if s]
    unknown = [s for s in sets if s not in GENERATORS]
    if unknown:
        p.error(f"unknown set(s) {unknown}; known: {', '.join(SETS)}")
    for name, df in generate_all(a.root, json.loads(a.params), sets).items():
        habitual = df["habitual"].astype(bool).mean()
        print(f"{name}: {len(df)} images in {df['split'].nunique()} split(s), {df['class'].nunique()} classes, "
              f"{100 * habitual:.0f}% in habitual scenes")


if __name__ == "__main__":
    main()
