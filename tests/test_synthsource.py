"""The synthetic world's many-class source task and its shifted test sets (stages.synthetic.source)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import datasets
from stages.synthetic import source as synthsource
from stages.synthetic import scenes as synthscenes
from stages.synthetic import species as synthspecies
from stages.synthetic.source import CLASSNAMES, SCENE_CLASSNAMES

SMALL = {"n_train": 160, "n_val": 32, "n_v2": 48, "n_sketch": 32, "n_rendition": 32, "n_hard": 64,
         "n_scenes": 34}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("source") / "world"
    synthsource.main(["--params", json.dumps(SMALL), "--root", str(root)])
    return root


def meta(root, name) -> pd.DataFrame:
    return pd.read_csv(root / name / "metadata.csv", keep_default_na=False)


def test_classes_are_sorted_folder_names_including_synthbirds_species():
    assert len(CLASSNAMES) >= 16 and list(CLASSNAMES) == sorted(CLASSNAMES)
    assert {s.name for s in synthspecies.SPECIES} < set(CLASSNAMES)
    assert all(2 <= len(synthspecies.HABITS[c]) <= 3 for c in CLASSNAMES)


def test_folder_layout(world):
    layout = {"source": ("train", "val"), "v2": ("test",), "sketch": ("test",), "rendition": ("test",),
              "hard": ("test",), "scenes": ("test",)}
    assert sorted(p.name for p in world.iterdir()) == sorted(layout) == sorted(synthsource.SETS)
    for name, splits in layout.items():
        classes = SCENE_CLASSNAMES if name == "scenes" else CLASSNAMES
        assert sorted(p.name for p in (world / name).iterdir()) == sorted([*splits, "metadata.csv", "params.json"])
        df = meta(world, name)
        for split in splits:
            assert sorted(p.name for p in (world / name / split).iterdir()) == list(classes)
            ds = datasets.open("imagefolder", world / name, split)
            assert ds.classnames == [c.replace("_", " ") for c in classes]
            assert sorted(ds.labels_and_attributes()[0].tolist()) == sorted(df.loc[df["split"] == split, "label"])
        assert all((world / name / p).is_file() for p in df["path"])
        assert (df["class"] == np.array(classes)[df["label"]]).all()
        assert json.loads((world / name / "params.json").read_text())["set"] == name
    assert len(meta(world, "source")) == SMALL["n_train"] + SMALL["n_val"]
    assert not list(world.glob(".*"))  # written atomically, no temporary folder left


def test_train_has_exactly_the_habitual_share_per_class(world):
    train = meta(world, "source").query("split == 'train'")
    counts = train.groupby("class").size()
    assert counts.max() - counts.min() <= 1  # balanced
    in_habit = train.apply(lambda r: r["scene"] in synthspecies.HABITS[r["class"]], axis=1)
    assert (in_habit == train["habitual"]).all()
    per_class = in_habit.groupby(train["class"]).sum()
    assert (per_class == (0.9 * counts).round().astype(int)).all()  # 9 of 10 per class
    assert in_habit.sum() == 144


def test_the_plans_rates_follow_the_parameters():
    params = synthsource.with_defaults({"habitual": 0.7, "texture": 0.2, "quality": 0.4})
    plan = synthsource.natural_plan(3200, params, np.random.default_rng(0))
    habitual = np.array([look.scene in synthspecies.HABITS[CLASSNAMES[y]] for y, look, _ in plan])
    assert habitual.sum() == 0.7 * 3200
    assert np.mean([look.texture is not None for _, look, _ in plan]) == pytest.approx(0.2, abs=0.025)
    assert np.mean([look.quality is not None for _, look, _ in plan]) == pytest.approx(0.4, abs=0.025)
    assert all(look.style is None for _, look, _ in plan)


def test_v2_is_a_fresh_draw_of_the_same_distribution(world):
    v2, val = meta(world, "v2"), meta(world, "source").query("split == 'val'")
    assert v2["habitual"].sum() == round(0.9 * 3) * 16  # 3 per class
    assert set(v2["scene"]) - set().union(*synthspecies.HABITS.values()) <= set(synthscenes.SCENES)
    first = lambda root, df: (root / df["path"].iloc[0]).read_bytes()
    assert first(world / "v2", v2) != first(world / "source", val)


def test_sketch_is_grey_pencil_on_paper(world):
    df = meta(world, "sketch")
    assert set(df["style"]) == {"sketch"} and set(df["texture"]) == set(df["quality"]) == {""}
    brightness = []
    for path in df["path"][:8]:
        image = Image.open(world / "sketch" / path)
        assert image.mode == "L"  # one channel on disk: every channel equal once read as RGB
        rgb = np.asarray(image.convert("RGB")).astype(int)
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        brightness.append(rgb.mean())
    assert np.mean(brightness) > 150


def test_rendition_has_other_styles_and_palettes(world):
    df = meta(world, "rendition")
    assert set(df["style"]) == {"cartoon", "painting"}
    # half in other colours (never "rgb", the identity), half in their own ("")
    assert set(df["palette"]) <= {"", "rbg", "grb", "gbr", "brg", "bgr"}
    assert 0.2 < (df["palette"] != "").mean() < 0.8
    assert 0.2 < (df["texture"] != "").mean() < 0.8
    assert all(p != (0, 1, 2) and sorted(p) == [0, 1, 2] for p in synthsource.PALETTES)


def test_hard_has_one_difficulty_per_image(world):
    df = meta(world, "hard")
    assert set(df["hard"]) == set(synthsource.HARD_KINDS)
    for _, r in df.iterrows():
        sp = synthspecies.SPECIES_BY_NAME[r["class"]]
        habits = synthspecies.HABITS[r["class"]]
        if r["hard"] == "unusual_scene":  # a plain object where its class is never photographed
            assert r["scene"] not in habits and not r["habitual"]
            assert synthscenes.SCENES[r["scene"]] != sp.y  # not even of its own place
            assert (r["scale"], r["contrast"]) == (0.5, 1)
        else:  # a small or faint object in one of its habitual scenes
            assert r["scene"] in habits and r["habitual"]
            expected = (0.3, 1) if r["hard"] == "small" else (0.5, 0.35)
            assert (r["scale"], r["contrast"]) == expected
    assert set(df["texture"]) == set(df["quality"]) == set(df["style"]) == set(df["palette"]) == {""}
    # each class's 4 images: round(4 / 3) = 1 in an unusual scene, the other 3 halved (2 small, 1 faint)
    counts = df.groupby(["class", "hard"]).size().unstack()
    assert (counts["unusual_scene"] == 1).all() and (counts["small"] == 2).all() and (counts["low_contrast"] == 1).all()
    params = json.loads((world / "hard" / "params.json").read_text())
    assert {k: params[k] for k in ("hard_unusual", "hard_scale", "hard_contrast", "n_hard")} == {
        "hard_unusual": 1 / 3, "hard_scale": 0.3, "hard_contrast": 0.35, "n_hard": 64}


def test_hard_kinds_follow_their_share_exactly_per_class():
    params = synthsource.with_defaults({"hard_unusual": 0.5})
    plan = synthsource.hard_plan(960, params, np.random.default_rng(0))  # 60 per class
    kinds = pd.DataFrame([(y, extra["hard"]) for y, _, extra in plan], columns=["y", "kind"])
    counts = kinds.groupby(["y", "kind"]).size().unstack()
    assert (counts["unusual_scene"] == 30).all() and (counts["small"] == 15).all() and (counts["low_contrast"] == 15).all()
    only_unusual = synthsource.hard_plan(64, synthsource.with_defaults({"hard_unusual": 1}), np.random.default_rng(0))
    assert {extra["hard"] for _, _, extra in only_unusual} == {"unusual_scene"}


def test_scenes_set_classes_are_the_scenes_caption_words(world):
    """SUN397's stand-in: one class folder per scene of the world, named by the first word a
    caption uses for it, each image a plain bird of a random species."""
    folders = synthsource.SCENE_FOLDERS
    assert sorted(folders) == sorted(synthscenes.SCENES)
    assert len(set(folders.values())) == len(folders) and list(SCENE_CLASSNAMES) == sorted(folders.values())
    for scene, folder in folders.items():
        assert folder.replace("_", " ") == synthscenes.SCENE_WORDS[scene][0] and " " not in folder
    df = meta(world, "scenes")
    assert list(df.columns) == ["path", "split", "label", "class", "species", "scene", "habitual", "texture",
                                "quality", "style", "scale", "contrast", "palette", "hard"]
    assert (df["split"] == "test").all()
    assert (df["class"] == df["scene"].map(folders)).all()
    counts = df["class"].value_counts()
    assert len(counts) == len(SCENE_CLASSNAMES) and counts.max() - counts.min() <= 1  # balanced: 34 = 2 x 17
    assert set(df["species"]) <= set(CLASSNAMES) and df["species"].nunique() > 8
    assert (df["habitual"] == df.apply(lambda r: r["scene"] in synthspecies.HABITS[r["species"]], axis=1)).all()
    assert (df["scale"] == 0.5).all() and (df["contrast"] == 1).all()  # nothing else varied
    assert set(df["texture"]) == set(df["quality"]) == set(df["style"]) == set(df["palette"]) == set(df["hard"]) == {""}
    for path in df["path"][:4]:
        assert Image.open(world / "scenes" / path).size == (32, 32)


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_each_set_is_deterministic_and_independent_of_the_others(world, tmp_path):
    # another train size leaves v2 alone: each set has its own random stream
    synthsource.generate_v2(tmp_path / "v2", {**SMALL, "n_train": 16})
    assert digest(tmp_path / "v2") != digest(world / "v2")  # params.json records n_train ...
    (tmp_path / "v2" / "params.json").unlink()
    again = {p.relative_to(tmp_path / "v2") for p in (tmp_path / "v2").rglob("*.jpg")}
    assert again == {p.relative_to(world / "v2") for p in (world / "v2").rglob("*.jpg")}
    for p in sorted(again)[:5]:  # ... but the images are the same
        assert (tmp_path / "v2" / p).read_bytes() == (world / "v2" / p).read_bytes()
    synthsource.generate_v2(tmp_path / "other", {**SMALL, "seed": 1})
    assert meta(tmp_path, "other")["scene"].tolist() != meta(world, "v2")["scene"].tolist()


def test_the_scenes_set_is_deterministic_and_leaves_the_other_sets_alone(world, tmp_path):
    synthsource.generate_scenes(tmp_path / "scenes", SMALL)
    assert digest(tmp_path / "scenes") == digest(world / "scenes")
    synthsource.generate_scenes(tmp_path / "seed1", {**SMALL, "seed": 1})
    assert meta(tmp_path, "seed1")["species"].tolist() != meta(world, "scenes")["species"].tolist()
    # the sets before it keep their random streams (seed, index) ...
    assert synthsource.SETS[:5] == ("source", "v2", "sketch", "rendition", "hard")
    p = synthsource.with_defaults(SMALL)
    for i, name in enumerate(synthsource.SETS):
        assert synthsource.stream(p, name).integers(1 << 30) == np.random.default_rng([0, i]).integers(1 << 30)
    # ... and its size changes nothing of theirs
    synthsource.generate_sketch(tmp_path / "sketch", {**SMALL, "n_scenes": 0})
    assert (tmp_path / "sketch" / "metadata.csv").read_bytes() == (world / "sketch" / "metadata.csv").read_bytes()
    images = sorted(p.relative_to(world / "sketch") for p in (world / "sketch").rglob("*.jpg"))
    assert images == sorted(p.relative_to(tmp_path / "sketch") for p in (tmp_path / "sketch").rglob("*.jpg"))
    assert all((tmp_path / "sketch" / p).read_bytes() == (world / "sketch" / p).read_bytes() for p in images)


def test_parameters_are_checked():
    with pytest.raises(ValueError, match=r"unknown source-world parameter\(s\) \['n_trian'\]"):
        synthsource.with_defaults({"n_trian": 10})
    with pytest.raises(ValueError, match="habitual must be in"):
        synthsource.with_defaults({"habitual": 1.5})
    with pytest.raises(ValueError, match="n_val must be a count"):
        synthsource.with_defaults({"n_val": 2.5})
    with pytest.raises(ValueError, match="n_scenes must be a count"):
        synthsource.with_defaults({"n_scenes": -1})
    with pytest.raises(ValueError, match="hard_unusual must be in"):
        synthsource.with_defaults({"hard_unusual": 2})
    assert synthsource.with_defaults(None) == synthsource.DEFAULTS


def test_cli_writes_only_the_named_sets(tmp_path, capsys):
    synthsource.main(["--params", json.dumps(SMALL), "--root", str(tmp_path), "--sets", "hard"])
    assert [p.name for p in tmp_path.iterdir()] == ["hard"]
    assert "hard: 64 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        synthsource.main(["--root", str(tmp_path), "--sets", "imagenet_c"])


def test_the_shipped_synthworld_data_sets_pass_their_data_checks(tmp_path):
    """config/synthbirds.yaml's source task and shifts, generated small, pass the checks the
    pipeline runs on them (every split it evaluates, trains or validates on exists)."""
    from stages.config import checked_splits, load

    cfg = load("config/synthbirds.yaml", "config/paper.yaml")
    world = {**cfg["datasets"]["synthsource"]["source"], **SMALL}
    synthsource.generate_all(tmp_path / "data/synthsource", world)
    checked = []
    for name, d in cfg["datasets"].items():
        if d["root"].startswith("data/synthsource/"):
            record = datasets.check(name, d["reader"], tmp_path / d["root"], d["classnames"], d["templates"],
                                    checked_splits(cfg, name))
            scenes = d["root"] == "data/synthsource/scenes"
            expected = [c.replace("_", " ") for c in SCENE_CLASSNAMES] if scenes else list(CLASSNAMES)
            assert record["classnames"] == expected, name
            checked.append(name)
    assert {"synth_hard", "synth_rendition", "synth_sketch", "synth_v2", "synthsource"} <= set(checked)
