"""The transfer sets as training sets: CLIP's published class names and templates (checked against
clip-benchmark's own files when that package is installed), the val carved from a published
training split (disjoint from train and test, the same on every machine), and each target's
protocol record."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest

from stages import datasets
from stages.datasets import published_prompts, transfer
from stages.datasets.protocol import protocol
from tests import trees

# class and template counts as CLIP evaluates them (clip-benchmark's caltech101 list has 102
# entries: "background" first, which the reader, like torchvision, does not read)
COUNTS = {"caltech101": (101, 34), "flowers102": (102, 1), "stanford_cars": (196, 8), "sun397": (397, 2)}


def bench_files() -> Path | None:
    """The installed clip-benchmark's data folder (without importing it: its __init__ pulls in
    its declared dependencies), or None."""
    spec = importlib.util.find_spec("clip_benchmark")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


@pytest.mark.parametrize("reader", list(COUNTS))
def test_readers_know_clips_class_names_and_templates(reader):
    n_classes, n_templates = COUNTS[reader]
    names, templates = datasets.static_classnames(reader), datasets.static_templates(reader)
    assert len(names) == len(set(names)) == n_classes and len(templates) == n_templates
    assert all(t.count("{}") == 1 and "{c}" not in t for t in templates)


def test_the_names_are_clips():
    assert datasets.static_classnames("caltech101")[:5] == [
        "off-center face", "centered face", "leopard", "motorbike", "accordion"]
    # every folder whose name is not a prompt noun maps to CLIP's name at its sorted position
    renamed = {f: n for f, n in zip(transfer.CALTECH_FOLDERS, datasets.static_classnames("caltech101"))
               if f.lower().replace("_", " ") != n}
    assert renamed == {"Faces": "off-center face", "Faces_easy": "centered face", "Leopards": "leopard",
                       "Motorbikes": "motorbike", "airplanes": "airplane", "car_side": "side of a car",
                       "cougar_body": "body of a cougar cat", "cougar_face": "face of a cougar cat",
                       "crocodile_head": "head of a  crocodile", "flamingo_head": "head of a flamingo",
                       "snoopy": "snoopy (cartoon beagle)", "yin_yang": "yin and yang symbol"}
    # torchvision's Flowers-102 names differ from CLIP's in three classes; the reader uses CLIP's
    from torchvision.datasets import Flowers102
    flowers = datasets.static_classnames("flowers102")
    assert {(a, b) for a, b in zip(Flowers102.classes, flowers) if a != b} == {
        ("globe-flower", "globe flower"), ("pink-yellow dahlia?", "pink and yellow dahlia"),
        ("ball moss", "air plant")}
    cars = datasets.static_classnames("stanford_cars")
    assert cars[0] == "AM General Hummer SUV 2000" and cars[5] == "Acura Integra Type R 2001"
    assert "Ram C/V Cargo Van Minivan 2012" in cars
    sun = datasets.static_classnames("sun397")
    assert sun == sorted(sun) and "theater indoor procenium" in sun   # ClassName.txt's order


def test_group_set_prompts():
    assert datasets.static_templates("waterbirds") == ["This is a picture of a {}."]
    assert datasets.static_classnames("celeba") == ["dark hair", "blond hair"]
    assert not any("non" in n or "not" in n for n in datasets.static_classnames("celeba"))


def test_vendored_entries_are_clip_benchmarks():
    """The vendored JSON subsets equal the package's files (pip install --no-deps clip-benchmark==1.6.2)."""
    folder = bench_files()
    if folder is None:
        pytest.skip("clip-benchmark not installed (pip install --no-deps clip-benchmark==1.6.2)")
    ours = json.loads((published_prompts.DATA / "clip_benchmark.json").read_text())
    for name in ("en_classnames.json", "en_zeroshot_classification_templates.json"):
        theirs = json.loads((folder / name).read_text())
        assert ours[name] == {k: theirs[k] for k in ours[name]}, name
    templates = json.loads((folder / "en_zeroshot_classification_templates.json").read_text())
    classnames = json.loads((folder / "en_classnames.json").read_text())
    for reader, key in (("caltech101", "caltech101"), ("flowers102", "flowers"),
                        ("stanford_cars", "cars"), ("sun397", "sun397"), ("imagenet", "imagenet1k")):
        assert datasets.static_templates(reader) == [t.replace("{c}", "{}") for t in templates[key]], reader
    assert datasets.static_classnames("caltech101") == classnames["caltech101"][1:]
    assert datasets.static_classnames("flowers102") == classnames["flowers"]
    assert classnames["imagenet1k"] == list(open_clip.IMAGENET_CLASSNAMES)


# sha256 of json.dumps(classes, sort_keys=True) of the SUN397 and StanfordCars lists, as parsed from
# openai/CLIP's data/prompts.md at commit d05afc4 (the vendored file's `source`); clip-benchmark
# does not ship these two lists, so this pin is what catches an edit of the vendored copy
CLIP_LISTS_SHA256 = "e0c423b45ae449914db868bb91efcc5c6fe0633634b584a882a5602c3b7a88dc"


def test_vendored_clip_lists_are_the_ones_read_from_prompts_md():
    classes = json.loads((published_prompts.DATA / "openai_clip.json").read_text())["classes"]
    assert hashlib.sha256(json.dumps(classes, sort_keys=True).encode()).hexdigest() == CLIP_LISTS_SHA256
    assert classes["SUN397"] == datasets.static_classnames("sun397")
    assert classes["StanfordCars"] == datasets.static_classnames("stanford_cars")


# ---- the carved val ------------------------------------------------------------------------

def test_carve_is_sklearns_draw_and_a_partition():
    train, val = transfer.carve(10)
    # train_test_split(range(10), test_size=0.2, random_state=10): the first ceil(2.0) of
    # RandomState(10).permutation(10) = [8, 2, 5, 6, 3, 1, 0, 7, 4, 9]
    assert val.tolist() == [2, 8] and train.tolist() == [0, 1, 3, 4, 5, 6, 7, 9]
    for n in (1, 7, 8144):
        train, val = transfer.carve(n)
        assert len(val) == math.ceil(0.2 * n) and not set(train) & set(val)
        assert sorted([*train, *val]) == list(range(n))
        assert np.array_equal(transfer.carve(n)[1], val)   # the same on every call


def paths(ds) -> list[str]:
    return [ds.dataset.path(i) for i in range(len(ds.dataset))]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("transfer")
    return {"caltech101": trees.write_caltech101(base / "caltech"),
            "stanford_cars": trees.write_stanford_cars(base / "cars"),
            "sun397": trees.write_sun397(base / "sun", n_train=4)}


@pytest.mark.parametrize("reader", ["caltech101", "stanford_cars", "sun397"])
def test_carved_val_is_disjoint_from_train_and_test(roots, reader):
    split = {s: datasets.open(reader, roots[reader], s) for s in ("train", "val", "trainval", "test")}
    p = {s: paths(ds) for s, ds in split.items()}
    assert p["val"] and p["train"] and not set(p["val"]) & set(p["train"])
    assert not (set(p["val"]) | set(p["train"])) & set(p["test"])
    assert sorted(p["train"] + p["val"]) == sorted(p["trainval"])
    assert len(p["test"]) == {"caltech101": 6, "stanford_cars": 4, "sun397": 6}[reader]   # untouched
    assert len(p["val"]) == math.ceil(0.2 * len(p["trainval"]))
    # labels travel with their images; the split is the same on a second opening
    labels = dict(zip(p["trainval"], split["trainval"].labels_and_attributes()[0].tolist()))
    assert split["val"].labels_and_attributes()[0].tolist() == [labels[x] for x in p["val"]]
    assert [split["val"].dataset[i][1] for i in range(len(p["val"]))] == [labels[x] for x in p["val"]]
    assert paths(datasets.open(reader, roots[reader], "val")) == p["val"]
    assert split["val"].classnames == split["test"].classnames == datasets.static_classnames(reader)


def test_carved_val_does_not_depend_on_the_test_split(tmp_path):
    """Adding test images (Caltech101: more than 30 per class) leaves train/val as they were."""
    small = trees.write_caltech101(tmp_path / "a", {"accordion": 31, "car_side": 32})
    large = trees.write_caltech101(tmp_path / "b", {"accordion": 40, "car_side": 45})
    rel = {r: [Path(x).relative_to(r).as_posix() for x in paths(datasets.open("caltech101", r, "val"))]
           for r in (small, large)}
    assert rel[small] == rel[large]


def test_flowers_keeps_its_published_val():
    assert datasets.SPLITS["flowers102"] == ["train", "val", "test"]


# ---- the protocol record -----------------------------------------------------------------------

def test_protocol_per_target():
    objectnet = protocol("objectnet")
    assert {k: objectnet[k] for k in ("splits", "classes", "scored_classes", "images", "templates")} == {
        "splits": ["test"], "classes": 1000, "scored_classes": 113, "images": {"test": 18_574}, "templates": 80}
    assert protocol("imagenet_r")["scored_classes"] == 200
    assert protocol("caltech101")["images"] == {"test": 5_647} and protocol("caltech101")["classes"] == 101
    assert protocol("sun397")["images"] == {"test": 19_850} and protocol("sun397")["templates"] == 2
    assert protocol("waterbirds")["splits"] == ["val", "test"] and protocol("waterbirds")["templates"] == 1
    assert protocol("imagefolder")["images"] is None and protocol("imagefolder")["classes"] is None
    for reader in datasets.READERS:
        p = protocol(reader)
        assert p["templates"] == len(datasets.static_templates(reader)) and p["prompt_source"]
    with pytest.raises(ValueError, match="unknown data set kind"):
        protocol("imagenet_c")
