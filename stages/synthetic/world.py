"""SynthBirds: a procedurally generated stand-in for Waterbirds (docs/method.md, "The synthetic world").

Bird sprites of several species (each a landbird or a waterbird; stages.synthetic.species) pasted
on scenes (land scenes, water scenes and a few others), written in the exact Waterbirds on-disk
layout, plus a separate captioned pre-training set from the same world for the tiny CLIP
(stages.synthetic.captions). This module writes the data set; its CLI writes both:

    python -m stages.synthetic.world --params '{...}' --root DATASET --pretrain-out PRETRAIN.npz

SynthBirds' own data set keeps its 8 land and water scenes and no nuisances unless asked
(`generate_dataset`'s texture and quality).
Its classes, places and scenes are stages.synthetic.groups'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..common.io import atomic_dir
from ..common.progress import progress
from ..datasets.waterbirds import SPLITS
from .captions import PRETRAIN_DEFAULTS, generate_pretrain_set
from .groups import sample_groups, scenes_of, species_of
from .species import SPECIES, draw_nuisances, make_look, render_sample


def generate_dataset(root: str | Path, n_train: int, n_val: int, n_test: int, train_correlation: float,
                     image_size: int = 32, seed: int = 0, texture: float = 0.0, quality: float = 0.0) -> pd.DataFrame:
    """Write a SynthBirds data set in the Waterbirds layout into `root` (atomically).

    `texture` / `quality`: the probability that an image (any split) carries an object texture /
    an image-quality effect, independent of class and place; metadata.csv then names them
    (columns texture, quality). At 0 (the default) no image carries one and those columns are absent.
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


def main(argv=None) -> None:
    """The command line: write the SynthBirds data set and its pre-training set, then print the images
    per (split, y, place)."""
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
                          quality=cfg["pretrain_quality"], style=cfg["pretrain_style"], world=cfg["pretrain_world"],
                          palette=cfg["pretrain_palette"])
    print(df.groupby(["split", "y", "place"]).size().to_string())


if __name__ == "__main__":
    main()
