"""The readers of stages.datasets on small trees written in each data set's published layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from stages import datasets
from stages.datasets import waterbirds as data
from stages.datasets import DatasetLayoutError, DatasetMissing, imagenet, objectnet, transfer
from tests import trees
from tests.helpers import make_dataset
from tests.trees import folder_tree, jpeg

WNIDS = imagenet.wnids()
GOLDFISH = "n01443537"  # ImageNet index 1; in ImageNet-R and -A
TENCH = "n01440764"     # ImageNet index 0; in neither R nor A


def labels(ds) -> list[int]:
    return sorted(ds.dataset[i][1] for i in range(len(ds.dataset)))


# ---- ImageNet and its shifts ---------------------------------------------------------------

def test_imagenet_labels_are_sorted_wnid_indices(tmp_path):
    folder_tree(tmp_path / "val", WNIDS, {TENCH: 1, GOLDFISH: 2, WNIDS[999]: 1})
    ds = datasets.open("imagenet", tmp_path, "val")
    assert WNIDS.index(GOLDFISH) == 1 and list(WNIDS) == sorted(WNIDS)
    assert labels(ds) == [0, 1, 1, 999]
    image, label, attribute, index = ds.dataset[1]
    assert isinstance(image, Image.Image) and attribute == -1 and index == 1
    assert ds.classnames == list(open_clip.IMAGENET_CLASSNAMES) and ds.classnames[1] == "goldfish"
    assert len(ds.templates) == 80 and ds.templates[0] == "a bad photo of a {}."
    assert ds.class_subset is None
    logits = torch.zeros(2, 1000)
    logits[0, 999], logits[1, 5] = 1.0, 1.0
    assert ds.predict(logits).tolist() == [999, 5]


def test_imagenet_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetLayoutError) as e:
        datasets.open("imagenet", tmp_path, "train")
    msg = str(e.value)
    assert f"{tmp_path / 'train'} not found" in msg and "image-net.org" in msg and "\n" not in msg

    val = folder_tree(tmp_path / "val", WNIDS)
    with pytest.raises(DatasetLayoutError, match="no images") as e:  # an empty data set
        datasets.open("imagenet", tmp_path, "val")
    assert str(val) in str(e.value)

    jpeg(val / GOLDFISH / "a.JPEG")
    (val / WNIDS[500]).rmdir()
    with pytest.raises(DatasetLayoutError, match=f"1 of the 1000 .*missing.*{WNIDS[500]}") as e:
        datasets.open("imagenet", tmp_path, "val")
    assert str(val) in str(e.value)

    (val / WNIDS[500]).mkdir()
    (val / "n99999999").mkdir()
    with pytest.raises(DatasetLayoutError, match="unexpected folder.*n99999999") as e:
        datasets.open("imagenet", tmp_path, "val")
    assert str(val) in str(e.value)

    with pytest.raises(ValueError, match="unknown split 'test'"):
        datasets.open("imagenet", tmp_path, "test")


def test_flat_imagenet_val_says_to_sort_it(tmp_path):
    jpeg(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")  # val/ as the ILSVRC tar extracts
    with pytest.raises(DatasetLayoutError, match="no wnid folders.*sort") as e:
        datasets.open("imagenet", tmp_path, "val")
    assert str(tmp_path / "val") in str(e.value) and "\n" not in str(e.value)


def test_imagenet_r_is_scored_among_its_200_classes(tmp_path):
    r_wnids = imagenet.timm_subset("imagenet_r")
    root = folder_tree(tmp_path / "imagenet-r", r_wnids, {GOLDFISH: 1}, ext=".jpg")
    (root / "README.txt").write_text("files next to the class folders are not classes")
    ds = datasets.open("imagenet_r", root, "test")
    assert labels(ds) == [1]
    assert len(ds.class_subset) == 200 and 1 in ds.class_subset and 0 not in ds.class_subset
    assert ds.class_subset == sorted(WNIDS.index(w) for w in r_wnids)
    assert len(ds.classnames) == 1000  # the ImageNet head, restricted at scoring time
    logits = torch.zeros(1, 1000)
    logits[0, 0], logits[0, 1] = 5.0, 3.0  # tench (not an R class) scores highest
    assert ds.predict(logits).tolist() == [1]


def test_imagenet_r_and_a_layout_errors(tmp_path):
    r_wnids = imagenet.timm_subset("imagenet_r")
    assert r_wnids[0] == GOLDFISH
    root = folder_tree(tmp_path / "imagenet-r", r_wnids[:5] + r_wnids[6:], {GOLDFISH: 1})
    with pytest.raises(DatasetLayoutError, match=f"1 of the 200 .*missing.*{r_wnids[5]}") as e:
        datasets.open("imagenet_r", root, "test")
    assert str(root) in str(e.value)
    folder_tree(root, [r_wnids[5], TENCH])  # tench is an ImageNet class, but not an R class
    with pytest.raises(DatasetLayoutError, match=f"unexpected folder.*{TENCH}"):
        datasets.open("imagenet_r", root, "test")

    a_wnids = imagenet.timm_subset("imagenet_a")
    assert GOLDFISH not in a_wnids
    a = folder_tree(tmp_path / "imagenet-a", a_wnids, {a_wnids[0]: 1, a_wnids[-1]: 1}, ext=".jpg")
    ds = datasets.open("imagenet_a", a, "test")
    assert labels(ds) == [WNIDS.index(a_wnids[0]), WNIDS.index(a_wnids[-1])]
    assert len(ds.class_subset) == 200 and set(ds.class_subset) != set(
        datasets.open("imagenet_r", folder_tree(tmp_path / "r2", r_wnids, {GOLDFISH: 1}), "test").class_subset)


def test_imagenet_v2_folder_name_is_the_label(tmp_path):
    root = folder_tree(tmp_path / "imagenetv2-matched-frequency-format-val",
                       [str(i) for i in range(1000)], {"7": 2, "999": 1}, ext=".jpeg")
    ds = datasets.open("imagenet_v2", root, "test")
    assert labels(ds) == [7, 7, 999]  # not the sorted-string order ("7" after "699")
    (root / "500").rmdir()
    with pytest.raises(DatasetLayoutError, match="missing.*500") as e:
        datasets.open("imagenet_v2", root, "test")
    assert str(root) in str(e.value)


def test_imagenet_sketch(tmp_path):
    root = folder_tree(tmp_path / "sketch", WNIDS, {GOLDFISH: 1, WNIDS[3]: 1})
    ds = datasets.open("imagenet_sketch", root, "test")
    assert labels(ds) == [1, 3] and ds.class_subset is None


def test_loader_batches_the_four_fields(tmp_path):
    from torchvision.transforms import v2
    root = folder_tree(tmp_path / "r", imagenet.timm_subset("imagenet_r"), {GOLDFISH: 3})
    tf = v2.Compose([v2.PILToTensor(), v2.Resize((4, 4))])
    ds = datasets.open("imagenet_r", root, "test", transform=tf)
    images, y, attribute, index = next(iter(torch.utils.data.DataLoader(ds.dataset, batch_size=3)))
    assert images.shape == (3, 3, 4, 4) and y.tolist() == [1, 1, 1]
    assert attribute.tolist() == [-1] * 3 and index.tolist() == [0, 1, 2]


# ---- ObjectNet ------------------------------------------------------------------------------

def test_objectnet_maps_folders_through_its_files_and_crops_the_border(tmp_path):
    root = trees.write_objectnet(tmp_path / "objectnet-1.0")
    folders, names, heads = objectnet.read_mappings(root)
    assert folders == ["alarm_clock", "banana", "chair"]
    assert names == ["alarm clock", "banana", "chair"]
    assert heads == [[409, 530], [954], [423, 559, 765]]

    ds = datasets.open("objectnet", root, "test")
    assert ds.label_names == names and len(ds.classnames) == 1000
    assert len(ds.dataset) == 3  # air_freshener's image is not read
    for i in range(3):
        image, label, _, _ = ds.dataset[i]
        path = Path(ds.dataset.path(i))
        assert label == folders.index(path.parent.name)
        original = np.asarray(Image.open(path).convert("RGB"))
        assert image.size == (12 - 4, 10 - 4)
        assert np.array_equal(np.asarray(image), original[2:-2, 2:-2])
        assert not (np.asarray(image) == [255, 0, 0]).all(axis=-1).any()  # no red border left


def test_objectnet_projects_imagenet_logits_to_its_classes(tmp_path):
    ds = datasets.open("objectnet", trees.write_objectnet(tmp_path / "objectnet-1.0"), "test")
    logits = torch.zeros(2, 1000)
    logits[0, 530], logits[0, 954], logits[0, 0] = 4.0, 3.0, 9.0  # 0 maps to no ObjectNet class
    logits[1, 765], logits[1, 409], logits[1, 423] = 2.0, 1.0, -1.0
    projected = ds.restrict(logits)
    assert projected.shape == (2, 3)
    assert projected.tolist() == [[4.0, 3.0, 0.0], [1.0, 0.0, 2.0]]
    assert ds.predict(logits).tolist() == [0, 2]


def test_objectnet_layout_errors(tmp_path):
    root = trees.write_objectnet(tmp_path / "objectnet-1.0")
    (root / "mappings" / "objectnet_to_imagenet_1k.json").unlink()
    with pytest.raises(DatasetLayoutError, match="objectnet_to_imagenet_1k.json") as e:
        datasets.open("objectnet", root, "test")
    assert str(root / "mappings") in str(e.value)

    root = trees.write_objectnet(tmp_path / "b" / "objectnet-1.0")
    for p in (root / "images" / "banana").iterdir():
        p.unlink()
    (root / "images" / "banana").rmdir()
    with pytest.raises(DatasetLayoutError, match="1 of the 3 .*missing.*banana") as e:
        datasets.open("objectnet", root, "test")
    assert str(root / "images") in str(e.value)

    (root / "images" / "banana").mkdir()
    (root / "images" / "spaceship").mkdir()
    with pytest.raises(DatasetLayoutError, match="spaceship.*folder_to_objectnet_label.json"):
        datasets.open("objectnet", root, "test")


# ---- group shift: Waterbirds and CelebA -----------------------------------------------------

def test_waterbirds_wraps_the_pipeline_reader(tmp_path):
    root = make_dataset(tmp_path / "wb", n_per_split=(8, 4, 6))
    ds = datasets.open("waterbirds", root, "test")
    assert len(ds.dataset) == 6 and ds.n_groups == 4 and ds.classnames == ["landbird", "waterbird"]
    assert ds.group_names[2] == "waterbird on land"
    import pandas as pd
    meta = pd.read_csv(root / "metadata.csv").query("split == 2").reset_index(drop=True)
    for i in range(6):
        _, y, place, index = ds.dataset[i]
        assert (y, place, index) == (meta.y[i], meta.place[i], i)
        assert ds.group(y, place) == 2 * meta.y[i] + meta.place[i]


def test_celeba_labels_attributes_and_groups(tmp_path):
    rows = [(1, -1, 0), (-1, 1, 2), (1, 1, 2), (-1, -1, 2), (1, -1, 2), (-1, 1, 1)]
    root = trees.write_celeba(tmp_path / "celeba", rows)
    ds = datasets.open("celeba", root, "test")
    got = [ds.dataset[i][1:3] for i in range(len(ds.dataset))]
    assert got == [(0, 1), (1, 1), (0, 0), (1, 0)]  # files 2..5, Blond_Hair and Male as 0/1
    assert [ds.group(y, a) for y, a in got] == [1, 3, 0, 2]
    assert ds.group_names == ["dark hair, female", "dark hair, male",
                              "blond hair, female", "blond hair, male"]
    assert ds.classnames == ["dark hair", "blond hair"] and ds.n_attributes == 2  # no negation
    assert len(ds.templates) == 4 and all("person" in t or "celebrity" in t for t in ds.templates)
    assert [Path(ds.dataset.path(i)).name for i in range(4)] == [f"00000{k}.jpg" for k in (2, 3, 4, 5)]
    assert len(datasets.open("celeba", root, "train").dataset) == 1


def test_celeba_layout_errors(tmp_path):
    root = trees.write_celeba(tmp_path / "celeba", [(1, -1, 0)])
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="list_eval_partition.txt") as e:
        datasets.open("celeba", root, "train")
    assert str(root) in str(e.value)

    root = trees.write_celeba(tmp_path / "c2", [(1, -1, 0)])
    text = (root / "list_attr_celeba.txt").read_text().replace("Blond_Hair", "Blonde")
    (root / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(DatasetLayoutError, match="Blond_Hair"):
        datasets.open("celeba", root, "train")


# ---- transfer sets --------------------------------------------------------------------------

def paths(ds) -> list[str]:
    return [str(Path(ds.dataset.path(i)).relative_to(ds.root)) for i in range(len(ds.dataset))]


def test_caltech101_all_has_torchvisions_labels(tmp_path):
    counts = {"BACKGROUND_Google": 1, "Faces_easy": 1, "accordion": 2, "car_side": 1}
    trees.write_caltech101(tmp_path, counts)
    ds = datasets.open("caltech101", tmp_path, "all")
    assert len(ds.classnames) == 101 and "background" not in ds.classnames  # no background class
    assert [ds.classnames[i] for i in (1, 4, 19)] == ["centered face", "accordion", "side of a car"]
    assert [ds.dataset[i][1] for i in range(4)] == [1, 4, 4, 19]
    assert ds.dataset[0][2:] == (-1, 0)
    from torchvision.datasets import Caltech101
    tv = Caltech101(tmp_path)
    assert ds.labels_and_attributes()[0].tolist() == tv.y
    assert paths(ds) == [f"{tv.categories[y]}/image_{k:04d}.jpg" for y, k in zip(tv.y, tv.index)]


def test_caltech101_trainval_is_the_first_30_images_of_each_class(tmp_path):
    counts = {"BACKGROUND_Google": 40, "Faces_easy": 32, "accordion": 31, "car_side": 3}
    trees.write_caltech101(tmp_path, counts)
    train, test, every = (datasets.open("caltech101", tmp_path, s) for s in ("trainval", "test", "all"))
    assert len(train.dataset) == 30 + 30 + 3 and len(test.dataset) == 2 + 1
    assert paths(test) == ["Faces_easy/image_0031.jpg", "Faces_easy/image_0032.jpg",
                           "accordion/image_0031.jpg"]
    assert test.labels_and_attributes()[0].tolist() == [1, 1, 4]
    assert "Faces_easy/image_0030.jpg" in paths(train) and "car_side/image_0003.jpg" in paths(train)
    assert sorted(paths(train) + paths(test)) == sorted(paths(every))
    assert not any(p.startswith("BACKGROUND") for p in paths(every))
    assert train.classnames == test.classnames == every.classnames

    trees.write_caltech101(tmp_path / "small", {"BACKGROUND_Google": 1, "accordion": 30})
    with pytest.raises(DatasetLayoutError, match="no images in split 'test'.*first 30") as e:
        datasets.open("caltech101", tmp_path / "small", "test")
    assert str(tmp_path / "small" / "caltech101" / "101_ObjectCategories") in str(e.value)
    # the 101 published class folders, no more and no fewer (CLIP's names are in their order)
    (tmp_path / "small" / "caltech101" / "101_ObjectCategories" / "wrench").rmdir()
    with pytest.raises(DatasetLayoutError, match="1 of the 101 expected Caltech101 class folders missing.*wrench"):
        datasets.open("caltech101", tmp_path / "small", "all")


def test_sun397_all_has_torchvisions_labels(tmp_path):
    trees.write_sun397(tmp_path)
    ds = datasets.open("sun397", tmp_path, "all")
    assert len(ds.classnames) == 397
    assert [ds.classnames[i] for i in (0, 8, 46)] == ["abbey", "apartment building outdoor", "beach"]
    assert len(ds.dataset) == 3 * 5 and paths(ds) == sorted(paths(ds))
    from torchvision.datasets import SUN397
    tv = SUN397(tmp_path)
    tv_label = {str(p.relative_to(tmp_path / "SUN397")): y for p, y in zip(tv._image_files, tv._labels)}
    assert dict(zip(paths(ds), ds.labels_and_attributes()[0].tolist())) == tv_label


@pytest.mark.parametrize("where", ["Partitions", "SUN397/Partitions"])
def test_sun397_train_and_test_are_partition_1(tmp_path, where):
    trees.write_sun397(tmp_path, partitions=where)
    listed = {s: (tmp_path / where / f).read_text().split() for s, f in transfer.SUN_PARTITIONS.items()}
    assert len(listed["trainval"]) == len(listed["test"]) == 3 * 2
    for split in ("trainval", "test"):
        ds = datasets.open("sun397", tmp_path, split)
        assert ["/" + p for p in paths(ds)] == listed[split]
        assert ds.labels_and_attributes()[0].tolist() == [0, 0, 8, 8, 46, 46]
        assert ds.dataset[2][1] == 8 and ds.classnames[8] == "apartment building outdoor"
    train, test = (set(paths(datasets.open("sun397", tmp_path, s))) for s in ("trainval", "test"))
    assert not train & test and train | test < set(paths(datasets.open("sun397", tmp_path, "all")))


def test_sun397_partition_errors(tmp_path):
    trees.write_sun397(tmp_path, partitions=None)
    assert len(datasets.open("sun397", tmp_path, "all").dataset) == 15  # "all" needs no partitions
    with pytest.raises(DatasetMissing) as e:
        datasets.open("sun397", tmp_path, "train")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'SUN397' / 'Partitions' / 'Training_01.txt'} (or "
                                              f"{tmp_path / 'Partitions' / 'Training_01.txt'}) not found")
    assert transfer.SUN_PARTITIONS_URL in msg

    parts = tmp_path / "Partitions"
    parts.mkdir()
    (parts / "Testing_01.txt").write_text("/a/abbey/sun_notthere.jpg\n")
    with pytest.raises(DatasetLayoutError, match="1 of the 1 images it lists not found.*sun_notthere") as e:
        datasets.open("sun397", tmp_path, "test")
    assert str(parts / "Testing_01.txt") in str(e.value)
    (parts / "Testing_01.txt").write_text("/c/castle_keep/sun_x.jpg\n")
    with pytest.raises(DatasetLayoutError, match="'castle_keep', not one of the 397"):
        datasets.open("sun397", tmp_path, "test")


def test_stanford_cars(tmp_path):
    trees.write_stanford_cars(tmp_path)
    ds = datasets.open("stanford_cars", tmp_path, "trainval")
    assert ds.classnames == trees.CARS_NAMES and len(ds.classnames) == 196
    assert [ds.dataset[i][1] for i in range(6)] == [0, 1, 2, 0, 1, 2]  # the .mat's classes count from 1
    test = datasets.open("stanford_cars", tmp_path, "test")
    assert test.labels_and_attributes()[0].tolist() == [2, 1, 0, 0]
    assert test.labels_and_attributes()[1].tolist() == [-1] * 4
    # a devkit whose class names are not the published 196 (CLIP's names would be misaligned)
    trees.write_stanford_cars(tmp_path / "odd", names=trees.CARS_NAMES[:3])
    with pytest.raises(DatasetLayoutError, match="its 3 class names are not Stanford Cars' 196") as e:
        datasets.open("stanford_cars", tmp_path / "odd", "test")
    assert str(tmp_path / "odd" / "stanford_cars" / "devkit" / "cars_meta.mat") in str(e.value)


def test_flowers102_labels_without_torchvisions_md5_check(tmp_path, monkeypatch):
    trees.write_flowers102(tmp_path, labels=[1, 5, 102, 7, 3, 9],
                           sets={"trnid": [1, 3], "valid": [2, 5], "tstid": [6, 4]})
    ds = datasets.open("flowers102", tmp_path, "train")
    assert len(ds.classnames) == 102 and ds.classnames[0] == "pink primrose"
    assert [ds.dataset[i][1] for i in range(2)] == [0, 101]
    assert ds.templates == ["a photo of a {}, a type of flower."]
    assert datasets.open("flowers102", tmp_path, "test").labels_and_attributes()[0].tolist() == [8, 6]
    # the same labels and images as torchvision's reader, once its md5 check is out of the way
    # (a split of one image is read here too; torchvision's squeezes it to a scalar and fails)
    trees.write_flowers102(tmp_path / "one", sets={"trnid": [1], "valid": [2], "tstid": [3]})
    assert datasets.open("flowers102", tmp_path / "one", "val").labels_and_attributes()[0].tolist() == [1]
    from torchvision.datasets import Flowers102
    monkeypatch.setattr(Flowers102, "_check_integrity", lambda self: True)
    for split in ("train", "val", "test"):
        tv, ours = Flowers102(tmp_path, split=split), datasets.open("flowers102", tmp_path, split)
        assert ours.labels_and_attributes()[0].tolist() == tv._labels
        assert [ours.dataset.path(i) for i in range(len(tv))] == list(map(str, tv._image_files))


def test_flowers102_layout_errors(tmp_path):
    trees.write_flowers102(tmp_path)
    (tmp_path / "flowers-102" / "jpg" / "image_00011.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="1 of the 3 images it lists not found.*image_00011") as e:
        datasets.open("flowers102", tmp_path, "test")
    assert str(tmp_path / "flowers-102" / "setid.mat") in str(e.value)
    assert len(datasets.open("flowers102", tmp_path, "train").dataset) == 6
    trees.write_flowers102(tmp_path / "b", sets={"trnid": [1, 13], "valid": [2], "tstid": [3]})
    with pytest.raises(DatasetLayoutError, match="trnid holds image ids outside 1 ... 12"):
        datasets.open("flowers102", tmp_path / "b", "train")
    (tmp_path / "b" / "flowers-102" / "imagelabels.mat").unlink()
    with pytest.raises(DatasetLayoutError, match="missing imagelabels.mat"):
        datasets.open("flowers102", tmp_path / "b", "train")


# ---- every reader: a missing data set is one line naming the folder and where it is published --

SPLIT = {"imagenet": "val", "waterbirds": "test", "celeba": "test", "caltech101": "all",
         "flowers102": "test", "stanford_cars": "test", "sun397": "all"}
SUBFOLDER = {"imagenet": "val", "caltech101": "caltech101/101_ObjectCategories",
             "flowers102": "flowers-102", "stanford_cars": "stanford_cars", "sun397": "SUN397"}


@pytest.mark.parametrize("kind", list(datasets.READERS))
def test_missing_data_set_is_one_line(tmp_path, kind):
    root = tmp_path / "nothing-here"
    with pytest.raises(DatasetLayoutError) as e:
        datasets.open(kind, root, SPLIT.get(kind, "test"))
    msg = str(e.value)
    assert isinstance(e.value, DatasetMissing)  # not there at all, as opposed to a wrong layout
    assert "\n" not in msg and "published at http" in msg
    assert msg.startswith(str(root / SUBFOLDER.get(kind, "")).rstrip("/") + " not found")


def test_empty_torchvision_set_names_the_folder(tmp_path):
    (tmp_path / "SUN397").mkdir()
    (tmp_path / "SUN397" / "ClassName.txt").write_text("".join(f"/{c}\n" for c in trees.sun_class_list()))
    with pytest.raises(DatasetLayoutError, match="no images") as e:
        datasets.open("sun397", tmp_path, "all")
    assert str(tmp_path / "SUN397") in str(e.value)
    (tmp_path / "SUN397" / "ClassName.txt").write_text("/a/abbey\n")   # not SUN397's 397 classes
    with pytest.raises(DatasetLayoutError, match="its 1 classes are not SUN397's 397") as e:
        datasets.open("sun397", tmp_path, "all")
    assert str(tmp_path / "SUN397" / "ClassName.txt") in str(e.value)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown data set kind 'imagenet_c'.*imagenet_r"):
        datasets.open("imagenet_c", "x", "test")


# ---- the reader tables and label arrays, on every reader's published-layout tree ----------------

@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    return trees.write_all(tmp_path_factory.mktemp("trees"))


def test_tables_cover_every_reader():
    for table in (datasets.SPLITS, datasets.EVAL_SPLITS, datasets.STATIC_CLASSNAMES):
        assert list(table) == list(datasets.READERS)
    for reader, splits in datasets.EVAL_SPLITS.items():
        assert splits and set(splits) <= set(datasets.SPLITS[reader]), reader
    assert datasets.EVAL_SPLITS["imagenet"] == ["val"]
    assert datasets.EVAL_SPLITS["waterbirds"] == datasets.EVAL_SPLITS["celeba"] == ["val", "test"]
    for reader in ("imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet",
                   "caltech101", "flowers102", "stanford_cars", "sun397"):
        assert datasets.EVAL_SPLITS[reader] == ["test"], reader
    assert datasets.SPLITS["sun397"] == datasets.SPLITS["caltech101"] == ["train", "val", "trainval", "test", "all"]
    assert datasets.SPLITS["stanford_cars"] == ["train", "val", "trainval", "test"]
    assert datasets.SPLITS["waterbirds"] == ["train", "val", "test"]


@pytest.mark.parametrize("reader", list(datasets.READERS))
def test_every_listed_split_opens_and_no_other(roots, reader):
    for split in datasets.SPLITS[reader]:
        assert len(datasets.open(reader, roots[reader], split).dataset) > 0, split
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        datasets.open(reader, roots[reader], "bogus")


@pytest.mark.parametrize("reader", list(datasets.READERS))
def test_static_classnames_are_what_the_reader_reads(roots, reader):
    names = datasets.static_classnames(reader)
    read = datasets.open(reader, roots[reader], datasets.SPLITS[reader][-1]).classnames
    if reader == "imagefolder":
        assert names is None
    else:
        assert names == read
    if reader.startswith("imagenet") or reader == "objectnet":
        assert names == list(open_clip.IMAGENET_CLASSNAMES) and len(names) == 1000
    with pytest.raises(ValueError, match="unknown data set kind"):
        datasets.static_classnames("imagenet_c")


@pytest.mark.parametrize("reader", list(datasets.READERS))
def test_labels_and_attributes_match_the_items_without_loading_images(roots, reader, monkeypatch):
    for split in datasets.SPLITS[reader]:
        ds = datasets.open(reader, roots[reader], split)
        items = [ds.dataset[i][1:3] for i in range(len(ds.dataset))]
        with monkeypatch.context() as m:
            m.setattr(Image, "open", lambda *a, **k: pytest.fail("an image was opened"))
            labels, attributes = ds.labels_and_attributes()
        assert labels.dtype == attributes.dtype == np.int64
        assert list(zip(labels.tolist(), attributes.tolist())) == items, split
        assert (attributes >= 0).all() if ds.group_names else (attributes == -1).all()
        labels[:] = -5  # a copy: the data set's own arrays stay as they were
        assert ds.labels_and_attributes()[0].tolist() == [y for y, _ in items]


def test_every_split_is_an_image_list_and_anything_else_is_refused_naming_the_set(tmp_path, roots):
    """One contract: whatever the published layout, a reader's split holds an ImageList (paths,
    labels, attributes), so that nothing downstream tells layouts apart."""
    for reader, root in roots.items():
        for split in datasets.EVAL_SPLITS[reader]:
            assert type(datasets.open(reader, root, split).dataset) is datasets.ImageList, (reader, split)

    class Opaque(torch.utils.data.Dataset):
        def __len__(self):
            return 1

    with pytest.raises(TypeError, match=f"odd \\({tmp_path}\\): Opaque is not an ImageList"):
        datasets.ClassificationSet(name="odd", root=tmp_path, split="test", dataset=Opaque(),
                                   classnames=["a"], templates=["{}"])


def test_waterbirds_tree_is_a_valid_waterbirds_layout(roots):
    data.read_metadata(roots["waterbirds"], check_images=True)
    record = datasets.check("waterbirds", "waterbirds", roots["waterbirds"])
    assert {s: r["group_counts"] for s, r in record["splits"].items()} == trees.WATERBIRDS_COUNTS
    ds = datasets.open("waterbirds", roots["waterbirds"], "train")
    image, y, place, _ = ds.dataset[0]
    pixels = np.asarray(image)
    assert np.abs(pixels[0, 0].astype(int) - trees.WATERBIRDS_BACKGROUNDS[place]).max() < 12
    assert np.abs(pixels[8, 8].astype(int) - trees.colour(y)).max() < 12


def test_trees_colour_images_by_class(roots):
    ds = datasets.open("imagenet", roots["imagenet"], "val")
    for i in range(len(ds.dataset)):
        image, y, _, _ = ds.dataset[i]
        assert np.abs(np.asarray(image)[5, 5].astype(int) - trees.colour(y)).max() < 12
    assert sorted(set(ds.labels_and_attributes()[0].tolist())) == list(trees.IMAGENET_CLASSES)


# ---- imagefolder: any root/<split>/<class>/*.jpg tree (the synthetic source world's) -------------

def test_imagefolder_labels_are_sorted_folders_and_names_read_underscores_as_spaces(tmp_path):
    root = trees.write_imagefolder(tmp_path / "src", classes=("swan", "blue_jay", "owl"),
                                   n={"train": 2, "test": 1})
    (root / "train" / "README.txt").write_text("a file beside the class folders is not a class")
    ds = datasets.open("imagefolder", root, "train")
    assert ds.classnames == ["blue jay", "owl", "swan"] and ds.root == root / "train"
    assert labels(ds) == [0, 0, 1, 1, 2, 2]
    assert ds.templates == ["a photo of a {}.", "This is a picture of a {}."]
    image, label, attribute, index = ds.dataset[0]
    assert isinstance(image, Image.Image) and attribute == -1 and index == 0
    assert ds.dataset.path(0).endswith("blue_jay/blue_jay_0.jpg") and label == 0
    assert datasets.SPLITS["imagefolder"] == ["train", "val", "test"]
    assert datasets.EVAL_SPLITS["imagefolder"] == ["test"]
    assert datasets.static_classnames("imagefolder") is None
    assert datasets.static_templates("imagefolder") == ds.templates


def test_imagefolder_errors_name_the_folder(tmp_path):
    root = trees.write_imagefolder(tmp_path / "src", n={"train": 1})
    with pytest.raises(DatasetMissing) as e:  # the split's folder: one line naming it
        datasets.open("imagefolder", root, "test")
    msg = str(e.value)
    assert msg.startswith(f"{root / 'test'} not found") and "test/<class>/*.jpg" in msg and "\n" not in msg
    (root / "val").mkdir()
    with pytest.raises(DatasetLayoutError, match="no class folders") as e:
        datasets.open("imagefolder", root, "val")
    assert str(root / "val") in str(e.value)
    (root / "val" / "owl").mkdir()
    with pytest.raises(DatasetLayoutError, match="no images"):
        datasets.open("imagefolder", root, "val")
    with pytest.raises(ValueError, match="unknown split 'all'"):
        datasets.open("imagefolder", root, "all")


def test_imagefolder_reads_the_synthetic_source_world(tmp_path):
    from stages.synthetic import source as synthsource
    params = {"n_train": 32, "n_val": 16}
    df = synthsource.generate_source(tmp_path / "source", params)
    ds = datasets.open("imagefolder", tmp_path / "source", "train")
    assert ds.classnames == list(synthsource.CLASSNAMES) and len(ds.classnames) == 16
    read = {Path(ds.dataset.path(i)).relative_to(tmp_path / "source").as_posix(): int(y)
            for i, y in enumerate(ds.labels_and_attributes()[0])}
    assert read == dict(zip(df.loc[df["split"] == "train", "path"], df.loc[df["split"] == "train", "label"]))
