"""The synthetic world's teacher knows renditions: the pre-training set's recoloured cartoons and
paintings, and the teacher's checks (per species on SynthBirds; 16-class on fresh renditions)."""

import json

import numpy as np
import open_clip
import pytest
import torch

from stages.synthetic import world as sw
from stages.synthetic.captions import STYLE_NAMED, generate_pretrain_set
from stages.synthetic.groups import species_of
from stages.synthetic.species import SPECIES
from stages.synthetic.teacher import CONTEXT_LENGTH, tiny_clip_config, zeroshot_check

TINY = {"width": 32, "layers": 1, "patch_size": 8, "text_layers": 1, "embed_dim": 16}


def test_only_cartoons_and_paintings_are_recoloured_at_the_palette_rate(tmp_path):
    generate_pretrain_set(tmp_path / "p.npz", 600, correlation=0.9, style=1.0, palette=0.5, world="all")
    z = np.load(tmp_path / "p.npz")
    coloured = z["palettes"] != ""
    rendered = np.isin(z["styles"], ["cartoon", "painting"])
    assert not coloured[~rendered].any()  # a sketch is grey: nothing to recolour
    assert coloured[rendered].mean() == pytest.approx(0.5, abs=0.1)  # ~400 renditions: sd 0.025
    assert set(z["palettes"][coloured]) <= {"rbg", "grb", "gbr", "brg", "bgr"}  # never the identity
    # recoloured or not, the caption names the style at the same rate (so the teacher learns "a
    # cartoon of a cardinal" in blue too) and always names the bird
    named = np.array([any(w in c for w in ("cartoon", "illustration", "comic", "painting", "watercolor", "artwork"))
                      for c in z["captions"]])
    for part in (rendered & coloured, rendered & ~coloured):
        assert named[part].mean() == pytest.approx(STYLE_NAMED, abs=0.1)  # ~200 each: sd 0.03
    assert all(sp in c for sp, c in zip(z["species"], z["captions"]))
    generate_pretrain_set(tmp_path / "q.npz", 100, correlation=0.9, style=1.0, palette=0.0, world="all")
    assert set(np.load(tmp_path / "q.npz")["palettes"]) == {""}


def test_the_world_cli_passes_the_palette_rate(tmp_path):
    cfg = {"image_size": 32, "n_train": 16, "n_val": 8, "n_test": 8, "train_correlation": 0.9, "n_pretrain": 60,
           "pretrain_correlation": 0.9, "seed": 0, "pretrain_world": "all", "pretrain_style": 1.0}
    for palette in (0.0, 1.0):
        out = tmp_path / f"p{palette}.npz"
        sw.main(["--params", json.dumps({**cfg, "pretrain_palette": palette}), "--root", str(tmp_path / f"d{palette}"),
                 "--pretrain-out", str(out)])
        z = np.load(out)
        rendered = np.isin(z["styles"], ["cartoon", "painting"])
        assert rendered.any() and (z["palettes"][rendered] != "").all() == (palette == 1.0)


def test_zeroshot_check_reports_each_species_and_the_renditions():
    # A teacher whose image features are all zero scores every class alike and predicts the first
    # one (argmax of equal scores): every landbird right, every waterbird wrong, and exactly one
    # rendition class in 16 right (the renditions are class-balanced: 32 images, 2 per class).
    torch.manual_seed(0)
    model = open_clip.CLIP(**tiny_clip_config(TINY, 32))
    with torch.no_grad():
        model.visual.proj.zero_()
    z = zeroshot_check(model, open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH), 128, 32, seed=0)
    assert set(z["species_accuracy"]) == {sp.name for sp in SPECIES}
    for name, acc in z["species_accuracy"].items():
        assert acc == (100.0 if name in {sp.name for sp in species_of(0)} else 0.0), name
    assert z["class_accuracy"] == 50.0 and z["class_worst_group"] == 0.0  # val-like: groups balanced
    assert z["rendition_accuracy"] == {"sketch": 6.25, "rendition": 6.25}
