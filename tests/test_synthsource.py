"""The synthetic world's many-class source task and its shifted test sets (stages.synthsource)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import datasets, synthsource, synthworld
from stages.synthsource import CLASSNAMES

SMALL = {"n_train": 160, "n_val": 32, "n_v2": 48, "n_sketch": 32, "n_rendition": 32, "n_hard": 64}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("source") / "world"
    synthsource.main(["--params", json.dumps(SMALL), "--root", str(root)])
    return root


def meta(root, name) -> pd.DataFrame:
    return pd.read_csv(root / name / "metadata.csv", keep_default_na=False)


def test_classes_are_sorted_folder_names_including_synthbirds_species():
    assert len(CLASSNAMES) >= 16 and list(CLASSNAMES) == sorted(CLASSNAMES)
    assert {s.name for s in synthworld.SPECIES} < set(CLASSNAMES)
    assert all(2 <= len(synthworld.HABITS[c]) <= 3 for c in CLASSNAMES)


def test_folder_layout(world):
    layout = {"source": ("train", "val"), "v2": ("test",), "sketch": ("test",), "rendition": ("test",),
              "hard": ("test",)}
    assert sorted(p.name for p in world.iterdir()) == sorted(layout)
    for name, splits in layout.items():
        assert sorted(p.name for p in (world / name).iterdir()) == sorted([*splits, "metadata.csv", "params.json"])
        df = meta(world, name)
        for split in splits:
            assert sorted(p.name for p in (world / name / split).iterdir()) == list(CLASSNAMES)
            ds = datasets.open("imagefolder", world / name, split)
            assert ds.classnames == list(CLASSNAMES)
            assert sorted(ds.labels_and_attributes()[0].tolist()) == sorted(df.loc[df["split"] == split, "label"])
        assert all((world / name / p).is_file() for p in df["path"])
        assert (df["class"] == np.array(CLASSNAMES)[df["label"]]).all()
        assert json.loads((world / name / "params.json").read_text())["set"] == name
    assert len(meta(world, "source")) == SMALL["n_train"] + SMALL["n_val"]
    assert not list(world.glob(".*"))  # written atomically, no temporary folder left


def test_train_has_exactly_the_habitual_share_per_class(world):
    train = meta(world, "source").query("split == 'train'")
    counts = train.groupby("class").size()
    assert counts.max() - counts.min() <= 1  # balanced
    in_habit = train.apply(lambda r: r["scene"] in synthworld.HABITS[r["class"]], axis=1)
    assert (in_habit == train["habitual"]).all()
    per_class = in_habit.groupby(train["class"]).sum()
    assert (per_class == (0.9 * counts).round().astype(int)).all()  # 9 of 10 per class
    assert in_habit.sum() == 144


def test_the_plans_rates_follow_the_parameters():
    params = synthsource.with_defaults({"habitual": 0.7, "texture": 0.2, "quality": 0.4})
    plan = synthsource.natural_plan(3200, params, np.random.default_rng(0))
    habitual = np.array([look.scene in synthworld.HABITS[CLASSNAMES[y]] for y, look, _ in plan])
    assert habitual.sum() == 0.7 * 3200
    assert np.mean([look.texture is not None for _, look, _ in plan]) == pytest.approx(0.2, abs=0.025)
    assert np.mean([look.quality is not None for _, look, _ in plan]) == pytest.approx(0.4, abs=0.025)
    assert all(look.style is None for _, look, _ in plan)


def test_v2_is_a_fresh_draw_of_the_same_distribution(world):
    v2, val = meta(world, "v2"), meta(world, "source").query("split == 'val'")
    assert v2["habitual"].sum() == round(0.9 * 3) * 16  # 3 per class
    assert set(v2["scene"]) - set().union(*synthworld.HABITS.values()) <= set(synthworld.WORLD_SCENES)
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
    assert set(df["palette"]) <= {"rbg", "grb", "gbr", "brg", "bgr"}  # never "rgb", the identity
    assert 0.2 < (df["texture"] != "").mean() < 0.8
    assert all(p != (0, 1, 2) and sorted(p) == [0, 1, 2] for p in synthsource.PALETTES)


def test_hard_is_unusual_scenes_with_small_or_faint_objects(world):
    df = meta(world, "hard")
    for _, r in df.iterrows():
        sp = synthworld.SPECIES_BY_NAME[r["class"]]
        assert r["scene"] not in synthworld.HABITS[r["class"]]
        assert synthworld.WORLD_SCENES[r["scene"]] != sp.y  # not even of its own place
    small = df["hard"] == "small"
    assert (df.loc[small, "scale"] == 0.3).all() and (df.loc[~small, "contrast"] == 0.35).all()
    assert (df.loc[small, "contrast"] == 1).all() and (df.loc[~small, "scale"] == 0.5).all()
    assert (small.groupby(df["class"]).sum() == 2).all()  # exactly half of each class's 4


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


def test_parameters_are_checked():
    with pytest.raises(ValueError, match=r"unknown source-world parameter\(s\) \['n_trian'\]"):
        synthsource.with_defaults({"n_trian": 10})
    with pytest.raises(ValueError, match="habitual must be in"):
        synthsource.with_defaults({"habitual": 1.5})
    with pytest.raises(ValueError, match="n_val must be a count"):
        synthsource.with_defaults({"n_val": 2.5})
    assert synthsource.with_defaults(None) == synthsource.DEFAULTS


def test_cli_writes_only_the_named_sets(tmp_path, capsys):
    synthsource.main(["--params", json.dumps(SMALL), "--root", str(tmp_path), "--sets", "hard"])
    assert [p.name for p in tmp_path.iterdir()] == ["hard"]
    assert "hard: 64 images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        synthsource.main(["--root", str(tmp_path), "--sets", "imagenet_c"])


def test_the_shipped_synthworld_data_sets_pass_their_data_checks(tmp_path):
    """config/synthworld.yaml's source task and shifts, generated small, pass the checks the
    pipeline runs on them (every split it evaluates, trains or validates on exists)."""
    from stages.config import checked_splits, load

    cfg = load("config/synthbirds.yaml", "config/synthworld.yaml", "config/paper.yaml")
    world = {**cfg["datasets"]["synthsource"]["source"], **SMALL}
    synthsource.generate_all(tmp_path / "data/synthsource", world)
    checked = []
    for name, d in cfg["datasets"].items():
        if d["root"].startswith("data/synthsource/"):
            record = datasets.check(name, d["reader"], tmp_path / d["root"], d["classnames"], d["templates"],
                                    checked_splits(cfg, name))
            assert record["classnames"] == list(synthsource.CLASSNAMES), name
            checked.append(name)
    assert sorted(checked) == ["synth_hard", "synth_rendition", "synth_sketch", "synth_v2", "synthsource"]
