"""`python -m stages.datasets check`: the data check record of a configured data set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest

from stages import datasets
from stages.datasets import DatasetConfigError, DatasetLayoutError, DatasetMissing, datacheck
from tests import trees

ROOT = Path(__file__).resolve().parents[1]

# n_images per split, counted by hand from the trees' defaults (tests/trees.py)
N_IMAGES = {
    "imagenet": {"train": 3 * 4, "val": 3 * 2},
    "imagenet_v2": {"test": 6}, "imagenet_sketch": {"test": 6}, "imagenet_r": {"test": 6},
    "imagenet_a": {"test": 6},
    "objectnet": {"test": 3},                                     # air_freshener is not read
    "waterbirds": {"train": 10, "val": 4, "test": 6},
    "celeba": {"train": 7, "val": 4, "test": 5},
    # train/val: 80/20 of trainval, the published training split (stages.datasets.transfer.carve)
    "caltech101": {"train": 72, "val": 18, "trainval": 30 + 30 + 30, "test": 2 + 1 + 3,
                   "all": 32 + 31 + 33},  # no background
    "flowers102": {"train": 6, "val": 3, "test": 3},
    "stanford_cars": {"train": 4, "val": 2, "trainval": 6, "test": 4},
    "sun397": {"train": 4, "val": 2, "trainval": 3 * 2, "test": 3 * 2, "all": 3 * 5},
    "imagefolder": {"train": 3 * 2, "val": 3, "test": 3},
}
# per split, group g = 2 * label + attribute
GROUP_COUNTS = {
    "waterbirds": {"train": [4, 1, 2, 3], "val": [1, 1, 1, 1], "test": [2, 1, 2, 1]},
    "celeba": {"train": [3, 2, 1, 1], "val": [1, 1, 1, 1], "test": [1, 2, 1, 1]},
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    return trees.write_all(tmp_path_factory.mktemp("trees"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.datasets", "check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("reader", list(datasets.READERS))
def test_record_counts_equal_hand_counts(roots, reader):
    record = datasets.check(f"my_{reader}", reader, roots[reader])
    assert record["dataset"] == f"my_{reader}" and record["reader"] == reader
    assert record["root"] == str(roots[reader])
    assert {s: r["n_images"] for s, r in record["splits"].items()} == N_IMAGES[reader]
    assert list(record["splits"]) == datasets.SPLITS[reader] and record["absent_splits"] == {}
    assert record["eval_splits"] == datasets.EVAL_SPLITS[reader]
    expected = GROUP_COUNTS.get(reader)
    assert {s: r["group_counts"] for s, r in record["splits"].items()} == (
        expected or {s: None for s in N_IMAGES[reader]})
    ds = datasets.open(reader, roots[reader], datasets.EVAL_SPLITS[reader][0])
    assert record["classnames"] == ds.classnames and record["templates"] == ds.templates
    assert record["group_names"] == ds.group_names
    assert (record["group_names"] is None) == (expected is None)
    json.dumps(record)  # the record is plain JSON


def test_cli_writes_the_record(roots, tmp_path):
    out = tmp_path / "data" / "birds" / "data_check.json"
    run = cli("--dataset", "birds", "--reader", "waterbirds", "--root", str(roots["waterbirds"]),
              "--out", str(out), "--splits", '["test"]', "--classnames", "null")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "birds: train 10 images, val 4 images, test 6 images"
    record = json.loads(out.read_text())
    assert record == datasets.check("birds", "waterbirds", roots["waterbirds"], splits=["test"])
    assert record["group_names"] == ["landbird on land", "landbird on water",
                                     "waterbird on land", "waterbird on water"]
    assert record["splits"]["train"]["group_counts"] == [4, 1, 2, 3]  # for the adjusted average
    assert record["eval_splits"] == ["test"]
    assert not [p for p in out.parent.iterdir() if p != out]  # no temporary file left


def test_cli_missing_folder_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "data_check.json"
    root = tmp_path / "nowhere" / "imagenet-r"
    run = cli("--dataset", "imagenet_r", "--reader", "imagenet_r", "--root", str(root), "--out", str(out))
    assert run.returncode != 0 and run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: {root} not found") and "hendrycks/imagenet-r" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".data_check*"))


def test_missing_folder_of_a_preparable_set_names_the_prepare_rule(tmp_path):
    root = tmp_path / "nowhere" / "imagenet-r"
    argv = ["--dataset", "imagenet_r", "--reader", "imagenet_r", "--root", str(root),
            "--out", str(tmp_path / "data_check.json")]
    assert "prepared" not in exit_message(argv)
    msg = exit_message(argv + ["--preparable"])
    assert msg.startswith(f"error: {root} not found")
    assert msg.endswith("or fetch it: snakemake --cores 1 data/imagenet_r/prepared")


def exit_message(argv) -> str:
    """The message the CLI exits with (in process; sys.exit prints it to stderr)."""
    with pytest.raises(SystemExit) as e:
        datacheck.main(["check", *argv])
    assert isinstance(e.value.code, str), e.value.code  # a message: exit status 1
    assert "\n" not in e.value.code
    return e.value.code


def test_classnames_override_of_the_wrong_length(roots, tmp_path):
    out = tmp_path / "data_check.json"
    msg = exit_message(["--dataset", "birds", "--reader", "waterbirds", "--root", str(roots["waterbirds"]),
                        "--out", str(out), "--classnames", '["a", "b", "c"]'])
    assert msg.startswith("error: datasets.birds.classnames: 3 names, but reader 'waterbirds' reads 2 classes")
    assert str(roots["waterbirds"]) in msg and not out.exists()
    with pytest.raises(DatasetConfigError, match="datasets.in1k.classnames: 2 names.* 1000 classes"):
        datasets.check("in1k", "imagenet", roots["imagenet"], classnames=["a", "b"])


def test_overrides_are_applied(roots):
    names, templates = ["small bird", "sea bird"], ["art of a {}."]
    record = datasets.check("birds", "waterbirds", roots["waterbirds"], classnames=names, templates=templates)
    assert record["classnames"] == names and record["templates"] == templates
    assert record["splits"]["test"]["group_counts"] == [2, 1, 2, 1]

    with pytest.raises(DatasetConfigError, match=r"datasets.birds.templates: .*exactly one '\{\}'.*'art'"):
        datasets.check("birds", "waterbirds", roots["waterbirds"], templates=["art", "a {}"])
    with pytest.raises(DatasetConfigError, match="datasets.birds.classnames: expected a non-empty list"):
        datasets.check("birds", "waterbirds", roots["waterbirds"], classnames="landbird")


def test_imagefolder_class_names_must_name_the_folders_in_label_order(roots, tmp_path):
    root = roots["imagefolder"]   # class folders blue_jay, owl, swan
    record = datasets.check("mine", "imagefolder", root, classnames=["Blue jay", "owl", "swan"])
    assert record["classnames"] == ["Blue jay", "owl", "swan"]
    # a list in another order would pair each folder with another class's name
    msg = exit_message(["--dataset", "mine", "--reader", "imagefolder", "--root", str(root), "--out",
                        str(tmp_path / "c.json"), "--classnames", '["swan", "owl", "blue jay"]'])
    assert msg.startswith(f"error: datasets.mine.classnames: name 'swan' (label 0) is given for class folder 'blue_jay' "
                          f"of {root / 'train'}: labels follow the sorted folders (blue_jay, owl, swan); list the names "
                          "in that order, or, where the names differ from the folder names, give classnames_file")
    with pytest.raises(DatasetConfigError, match=r"datasets\.mine\.classnames: 2 names for the 3 class folders of "):
        datasets.check("mine", "imagefolder", root, classnames=["blue jay", "owl"])
    assert not (tmp_path / "c.json").exists()


def test_imagefolder_class_names_from_a_folder_to_name_mapping(roots, tmp_path):
    root = roots["imagefolder"]
    names = {"swan": "mute swan", "blue_jay": "Cyanocitta cristata", "owl": "barn owl"}
    record = datasets.check("mine", "imagefolder", root, classnames=names)
    assert record["classnames"] == ["Cyanocitta cristata", "barn owl", "mute swan"]   # the sorted folders' order
    out = tmp_path / "c.json"
    datacheck.main(["check", "--dataset", "mine", "--reader", "imagefolder", "--root", str(root), "--out", str(out),
                    "--classnames", json.dumps(names)])
    assert json.loads(out.read_text())["classnames"] == record["classnames"]
    with pytest.raises(DatasetConfigError, match=r"datasets\.mine\.classnames_file: no name for the class folder\(s\) "
                       r"\['swan'\] of "):
        datasets.check("mine", "imagefolder", root, classnames={"blue_jay": "jay", "owl": "owl"})
    with pytest.raises(DatasetConfigError, match=r"classnames_file: names folder\(s\) \['heron'\] that .* does not have"):
        datasets.check("mine", "imagefolder", root, classnames={**names, "heron": "heron"})
    with pytest.raises(DatasetConfigError, match=r"datasets\.b\.classnames_file: reader 'waterbirds' does not name"):
        datasets.check("b", "waterbirds", roots["waterbirds"], classnames={"a": "b", "c": "d"})


def test_overrides_keep_a_label_space_of_its_own(roots):
    ds = datasets.open("objectnet", roots["objectnet"], "test")
    names = [f"class {i}" for i in range(1000)]
    renamed = datasets.with_overrides(ds, "on", classnames=names)
    assert renamed.classnames == names and renamed.label_names == ds.label_names == [
        "alarm clock", "banana", "chair"]
    plain = datasets.open("imagenet_r", roots["imagenet_r"], "test")
    renamed = datasets.with_overrides(plain, "r", classnames=names, templates=["{}!"])
    assert renamed.label_names == names and renamed.templates == ["{}!"]
    assert plain.classnames == list(open_clip.IMAGENET_CLASSNAMES)  # the original is untouched
    assert renamed.class_subset == plain.class_subset


def test_an_absent_split_is_fine_only_when_not_evaluated(tmp_path):
    trees.write_sun397(tmp_path, partitions=None)
    record = datasets.check("sun", "sun397", tmp_path, splits=["all"])
    assert list(record["splits"]) == ["all"] and record["splits"]["all"]["n_images"] == 15
    assert set(record["absent_splits"]) == {"train", "val", "trainval", "test"}
    assert "Partitions.zip" in record["absent_splits"]["train"]
    with pytest.raises(DatasetMissing, match="Testing_01.txt.*not found"):
        datasets.check("sun", "sun397", tmp_path)  # the default evaluates test
    msg = exit_message(["--dataset", "sun", "--reader", "sun397", "--root", str(tmp_path),
                        "--out", str(tmp_path / "c.json"), "--splits", '["train", "all"]'])
    assert msg.startswith("error: ") and "Training_01.txt" in msg and not (tmp_path / "c.json").exists()

    only_val = trees.folder_tree(tmp_path / "in" / "val", datasets.imagenet.wnids(),
                                 {datasets.imagenet.wnids()[3]: 2})
    record = datasets.check("in", "imagenet", only_val.parent)
    assert record["splits"] == {"val": {"n_images": 2, "group_counts": None}}
    assert record["absent_splits"]["train"].startswith(f"{tmp_path / 'in' / 'train'} not found")
    with pytest.raises(DatasetMissing, match="train not found"):
        datasets.check("in", "imagenet", only_val.parent, splits=["train", "val"])


def test_a_wrong_layout_is_an_error_even_when_not_evaluated(tmp_path):
    root = trees.write_imagenet(tmp_path / "in")
    (root / "train" / datasets.imagenet.wnids()[7]).rmdir()
    with pytest.raises(DatasetLayoutError, match="1 of the 1000 expected imagenet wnid folders missing") as e:
        datasets.check("in", "imagenet", root)   # evaluates val only; train is there, but broken
    assert not isinstance(e.value, DatasetMissing) and str(root / "train") in str(e.value)


def test_splits_option_is_checked(roots):
    with pytest.raises(DatasetConfigError, match=r"datasets.wb.splits: unknown split\(s\) \['dev'\]; "
                                                 "reader 'waterbirds' has train, val, test"):
        datasets.check("wb", "waterbirds", roots["waterbirds"], splits=["val", "dev"])
    with pytest.raises(DatasetConfigError, match="datasets.wb.splits: expected a non-empty list"):
        datasets.check("wb", "waterbirds", roots["waterbirds"], splits=[])
    with pytest.raises(DatasetConfigError, match="datasets.wb.reader: unknown reader 'birds'"):
        datasets.check("wb", "birds", roots["waterbirds"])
    msg = exit_message(["--dataset", "wb", "--reader", "waterbirds", "--root", str(roots["waterbirds"]),
                        "--out", "x.json", "--splits", "[test]"])
    assert msg.startswith("error: --splits: not JSON")


def test_labels_must_fit_the_classes_and_groups(tmp_path):
    root = trees.write_waterbirds(tmp_path / "wb")
    meta = root / "metadata.csv"
    lines = meta.read_text().splitlines()
    fields = lines[-1].split(",")
    fields[2] = "2"  # y of the last test image: a third class
    meta.write_text("\n".join([*lines[:-1], ",".join(fields)]) + "\n")
    with pytest.raises(DatasetLayoutError, match=f"{root}: split 'test': label 2 of sample 5 is "
                                                 "outside the 2 classes"):
        datasets.check("wb", "waterbirds", root)


def test_an_evaluated_split_without_images_is_an_error(tmp_path):
    root = trees.write_waterbirds(tmp_path / "wb", counts={"train": [1, 1, 1, 1], "val": [1, 1, 1, 1]})
    with pytest.raises(DatasetLayoutError, match=f"{root}: split 'test': no images, and the split is evaluated"):
        datasets.check("wb", "waterbirds", root)
    record = datasets.check("wb", "waterbirds", root, splits=["val"])
    assert record["splits"]["test"] == {"n_images": 0, "group_counts": [0, 0, 0, 0]}


def test_one_group_formula_counts_scores_and_inverts():
    """The group of (label, attribute) is written once (stages.datasets.group_index): the data
    check's counts, a data set's `group` (the scorer's index) and its inverse agree, here with
    3 classes x 4 attributes (C != A, so a swapped pair would land in another group)."""
    from stages.datasets import ClassificationSet, ImageList, group_index, group_parts
    from stages.datasets.datacheck import group_counts

    labels = np.array([0, 0, 1, 2, 2, 2, 1])
    attributes = np.array([3, 0, 1, 2, 2, 0, 1])
    groups = group_index(labels, attributes, 4)
    assert groups.tolist() == [3, 0, 5, 10, 10, 8, 5]                     # 4 * label + attribute, by hand
    assert [g.tolist() for g in group_parts(groups, 4)] == [labels.tolist(), attributes.tolist()]
    assert group_counts(labels, attributes, 3, 4) == [1, 0, 0, 1, 0, 2, 0, 0, 1, 0, 2, 0]
    ds = ClassificationSet(name="g", root=Path("."), split="test", dataset=ImageList([]), classnames=list("abc"),
                           templates=["{}"], n_attributes=4, group_names=[f"{c}{a}" for c in "abc" for a in range(4)])
    assert ds.group(labels, attributes).tolist() == groups.tolist()
    assert ds.group_names[groups[0]] == "a3" and ds.group_names[groups[3]] == "c2"
