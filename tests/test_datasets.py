"""The readers of stages.datasets on small trees written in each data set's published layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import scipy.io as sio
from PIL import Image

from stages import datasets
from stages.datasets import DatasetLayoutError, imagenet, objectnet
from tests.helpers import make_dataset

WNIDS = imagenet.wnids()
GOLDFISH = "n01443537"  # ImageNet index 1; in ImageNet-R and -A
TENCH = "n01440764"     # ImageNet index 0; in neither R nor A


def jpeg(path: Path, value: int = 128, size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def folder_tree(root: Path, folders, images: dict[str, int] | None = None, ext=".JPEG") -> Path:
    """Every folder of `folders`, with images[folder] images in the listed ones only."""
    for f in folders:
        (root / f).mkdir(parents=True, exist_ok=True)
    for f, n in (images or {}).items():
        for k in range(n):
            jpeg(root / f / f"{f}_{k}{ext}")
    return root


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

def ilsvrc_id(index: int) -> int:
    """A made-up but bijective sorted-wnid index -> ILSVRC-2012 id, so that a reader skipping
    pytorch_to_imagenet_2012_id.json gets the classes wrong."""
    return (7 * index + 3) % 1000


# folder -> (ObjectNet label, ImageNet indices)
OBJECTNET = {"banana": ("Banana", [954]), "alarm_clock": ("Alarm clock", [409, 530]),
             "chair": ("Chair", [423, 559, 765])}


def objectnet_tree(root: Path, border=(255, 0, 0)) -> Path:
    maps = root / "mappings"
    maps.mkdir(parents=True)
    folder_to_label = {f: lab for f, (lab, _) in OBJECTNET.items()}
    folder_to_label["air_freshener"] = "Air freshener"  # an ObjectNet class without ImageNet twin
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps(folder_to_label))
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {lab: "; ".join(f"imagenet name {ilsvrc_id(i)}" for i in idx) for lab, idx in OBJECTNET.values()}))
    (maps / "imagenet_to_label_2012_v2").write_text("".join(f"imagenet name {i}\n" for i in range(1000)))
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(
        json.dumps({str(p): ilsvrc_id(p) for p in range(1000)}))
    rng = np.random.default_rng(0)
    for f in [*OBJECTNET, "air_freshener"]:
        pixels = rng.integers(0, 200, (10, 12, 3), dtype=np.uint8)
        pixels[0, :], pixels[-1, :], pixels[:, 0], pixels[:, -1] = border, border, border, border
        (root / "images" / f).mkdir(parents=True)
        Image.fromarray(pixels).save(root / "images" / f / f"{f}_0.png")
    return root


def test_objectnet_maps_folders_through_its_files_and_crops_the_border(tmp_path):
    root = objectnet_tree(tmp_path / "objectnet-1.0")
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
    ds = datasets.open("objectnet", objectnet_tree(tmp_path / "objectnet-1.0"), "test")
    logits = torch.zeros(2, 1000)
    logits[0, 530], logits[0, 954], logits[0, 0] = 4.0, 3.0, 9.0  # 0 maps to no ObjectNet class
    logits[1, 765], logits[1, 409], logits[1, 423] = 2.0, 1.0, -1.0
    projected = ds.restrict(logits)
    assert projected.shape == (2, 3)
    assert projected.tolist() == [[4.0, 3.0, 0.0], [1.0, 0.0, 2.0]]
    assert ds.predict(logits).tolist() == [0, 2]


def test_objectnet_layout_errors(tmp_path):
    root = objectnet_tree(tmp_path / "objectnet-1.0")
    (root / "mappings" / "objectnet_to_imagenet_1k.json").unlink()
    with pytest.raises(DatasetLayoutError, match="objectnet_to_imagenet_1k.json") as e:
        datasets.open("objectnet", root, "test")
    assert str(root / "mappings") in str(e.value)

    root = objectnet_tree(tmp_path / "b" / "objectnet-1.0")
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


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def celeba_tree(root: Path, rows) -> Path:
    """rows: (blond -1/1, male -1/1, partition)."""
    blond, male = CELEBA_ATTRIBUTES.index("Blond_Hair"), CELEBA_ATTRIBUTES.index("Male")
    attr_lines, part_lines = [str(len(rows)), " ".join(CELEBA_ATTRIBUTES)], []
    for k, (b, m, p) in enumerate(rows):
        name = f"{k + 1:06d}.jpg"
        values = ["-1"] * 40
        values[blond], values[male] = str(b), str(m)
        attr_lines.append(f"{name} " + " ".join(f"{v:>2}" for v in values))  # published: aligned
        part_lines.append(f"{name} {p}")
        jpeg(root / "img_align_celeba" / name, value=10 * k)
    (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return root


def test_celeba_labels_attributes_and_groups(tmp_path):
    rows = [(1, -1, 0), (-1, 1, 2), (1, 1, 2), (-1, -1, 2), (1, -1, 2), (-1, 1, 1)]
    root = celeba_tree(tmp_path / "celeba", rows)
    ds = datasets.open("celeba", root, "test")
    got = [ds.dataset[i][1:3] for i in range(len(ds.dataset))]
    assert got == [(0, 1), (1, 1), (0, 0), (1, 0)]  # files 2..5, Blond_Hair and Male as 0/1
    assert [ds.group(y, a) for y, a in got] == [1, 3, 0, 2]
    assert ds.group_names == ["non-blond hair, female", "non-blond hair, male",
                              "blond hair, female", "blond hair, male"]
    assert ds.classnames == ["non-blond hair", "blond hair"] and ds.n_attributes == 2
    assert [Path(ds.dataset.path(i)).name for i in range(4)] == [f"00000{k}.jpg" for k in (2, 3, 4, 5)]
    assert len(datasets.open("celeba", root, "train").dataset) == 1


def test_celeba_layout_errors(tmp_path):
    root = celeba_tree(tmp_path / "celeba", [(1, -1, 0)])
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="list_eval_partition.txt") as e:
        datasets.open("celeba", root, "train")
    assert str(root) in str(e.value)

    root = celeba_tree(tmp_path / "c2", [(1, -1, 0)])
    text = (root / "list_attr_celeba.txt").read_text().replace("Blond_Hair", "Blonde")
    (root / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(DatasetLayoutError, match="Blond_Hair"):
        datasets.open("celeba", root, "train")


# ---- transfer sets through torchvision --------------------------------------------------------

def test_caltech101(tmp_path):
    cats = tmp_path / "caltech101" / "101_ObjectCategories"
    for c, n in [("BACKGROUND_Google", 1), ("Faces_easy", 1), ("accordion", 2), ("car_side", 1)]:
        for k in range(n):
            jpeg(cats / c / f"image_{k + 1:04d}.jpg")
    ds = datasets.open("caltech101", tmp_path, "all")
    assert ds.classnames == ["centered face", "accordion", "side of a car"]  # no background class
    assert labels(ds) == [0, 1, 1, 2]
    assert ds.dataset[0][2:] == (-1, 0)


def test_sun397(tmp_path):
    sun = tmp_path / "SUN397"
    sun.mkdir()
    (sun / "ClassName.txt").write_text("/a/abbey\n/a/apartment_building/outdoor\n")
    jpeg(sun / "a" / "abbey" / "sun_aaa.jpg")
    jpeg(sun / "a" / "apartment_building" / "outdoor" / "sun_bbb.jpg")
    jpeg(sun / "a" / "apartment_building" / "outdoor" / "sun_ccc.jpg")
    ds = datasets.open("sun397", tmp_path, "all")
    assert ds.classnames == ["abbey", "apartment building outdoor"]
    assert labels(ds) == [0, 1, 1]


def test_stanford_cars(tmp_path):
    base = tmp_path / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = np.array(["AM General Hummer SUV 2000", "Acura RL Sedan 2012"], dtype=object)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    annos = np.array([("00001.jpg", 2), ("00002.jpg", 1)], dtype=[("fname", object), ("class", np.uint8)])
    sio.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": annos})
    for f in ("00001.jpg", "00002.jpg"):
        jpeg(base / "cars_train" / f)
    ds = datasets.open("stanford_cars", tmp_path, "train")
    assert ds.classnames == list(names)
    assert [ds.dataset[i][1] for i in range(2)] == [1, 0]  # the .mat's classes count from 1


def test_flowers102_labels(tmp_path, monkeypatch):
    from torchvision.datasets import Flowers102
    # torchvision checks the .mat files' md5 against the published ones: a test tree cannot match
    monkeypatch.setattr(Flowers102, "_check_integrity", lambda self: True)
    base = tmp_path / "flowers-102"
    base.mkdir()
    sio.savemat(base / "setid.mat",
                {"trnid": np.array([1, 3]), "valid": np.array([2]), "tstid": np.array([4])})
    sio.savemat(base / "imagelabels.mat", {"labels": np.array([1, 5, 102, 7])})
    for k in range(1, 5):
        jpeg(base / "jpg" / f"image_{k:05d}.jpg")
    ds = datasets.open("flowers102", tmp_path, "train")
    assert len(ds.classnames) == 102 and ds.classnames[0] == "pink primrose"
    assert [ds.dataset[i][1] for i in range(2)] == [0, 101]
    assert ds.templates == ["a photo of a {}, a type of flower."]


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
    assert "\n" not in msg and "published at http" in msg
    assert msg.startswith(str(root / SUBFOLDER.get(kind, "")).rstrip("/") + " not found")


def test_empty_torchvision_set_names_the_folder(tmp_path):
    (tmp_path / "SUN397").mkdir()
    (tmp_path / "SUN397" / "ClassName.txt").write_text("/a/abbey\n")
    with pytest.raises(DatasetLayoutError, match="no images") as e:
        datasets.open("sun397", tmp_path, "all")
    assert str(tmp_path / "SUN397") in str(e.value)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown data set kind 'imagenet_c'.*imagenet_r"):
        datasets.open("imagenet_c", "x", "test")
