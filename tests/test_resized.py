"""The prepared copy of a training split with pre-resized images (issue 18, item 5): the same files
in the same layout and order, short side 256 (smaller originals as they are), written atomically
and resumably; the training loader reading it draws the PIL path's crop boxes and captions, and
its pixels differ from the originals' only by the resize and the JPEG re-encoding."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import make_dataset
from PIL import Image

from stages import config as stage_config
from stages import datasets
from stages.datasets import resized
from stages.datasets.resized import (
    MANIFEST,
    RECORD,
    ResizedCopyError,
    ResizedImages,
    main,
    sample_files,
    write_resized,
)
from stages.finetune.runs import FinetuneConfigError, RunConfig
from stages.finetune.setup import train_loader, training_images
from stages.finetune.trainset import (
    CROP_STREAM,
    DecodedCache,
    SeededCropTransform,
    TrainSet,
    copy_box,
    crop_params,
    sample_rng,
)

# OpenAI CLIP's 224 px, bicubic (the model only lends its preprocess config)
MODEL = SimpleNamespace(preprocess_cfg={"size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                        "interpolation": "bicubic"})
PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"   # 512 x 600, a real photo

# The crops of the copy and of the original differ by (1) the copy's resize: a 0.9-1.0 crop of a
# 256 px short side still holds more pixels than the 224 px crop keeps, so it loses little; (2)
# the JPEG re-encoding at quality 90, which costs natural photos ~36-42 dB PSNR (measured with
# these crops: 36.5 dB, mean |diff| 2.4 grey levels on the photo; 39 dB, 2.2 on the textures);
# (3) the box's edges, resampled at sub-pixel positions in the copy. So: mean |diff| <= 4 of 255
# and PSNR >= 33 dB (3 dB below the worst measured). Where the box goes is tested exactly, not
# through pixels: a box drawn anew on the copy's size from the same generator lands within a pixel
# of the right one (numpy's draws scale with the range) and would pass these tolerances.
MEAN_ABS, PSNR_DB = 4.0, 33.0


def ramp(width: int, height: int) -> Image.Image:
    """Red grows with x, green with y, from 0 to 255 across the image: a pixel's colour says
    where in the image (in relative terms) it comes from, at any resolution."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], -1).astype(np.uint8))


def texture(width: int, height: int, seed: int) -> Image.Image:
    """Colour fields plus fine texture (bench/loader.py's images: they compress like photos)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    return Image.fromarray(np.clip(field + rng.normal(0, 12, (height, width, 1)), 0, 255).astype(np.uint8))


# file -> (original size, the copy's size): unequal sizes and both orientations, a grey image, and
# one smaller than 256 px (kept as it is)
FILES = {
    "a_cat/0.jpg": ((512, 600), (256, 300)),
    "a_cat/1.jpg": ((500, 375), (341, 256)),
    "b_dog/0.jpg": ((375, 500), (256, 341)),
    "b_dog/1.jpg": ((200, 150), (200, 150)),
    "b_dog/2.jpg": ((400, 300), (341, 256)),
}


def make_image(name: str, width: int, height: int) -> Image.Image:
    if name == "a_cat/0.jpg":
        return Image.open(PHOTO).convert("RGB")
    if name == "a_cat/1.jpg":
        return ramp(width, height)
    if name == "b_dog/2.jpg":
        return texture(width, height, 2).convert("L")
    return texture(width, height, 1)


def write_tree(root: Path) -> Path:
    """An ImageFolder tree (reader `imagefolder`) of FILES' images in its train split."""
    for name, ((w, h), _) in FILES.items():
        path = root / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = make_image(name, w, h)
        assert image.size == (w, h)
        image.save(path, quality=92)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("resized")
    root = write_tree(base / "orig")
    out = base / "orig_resized_train"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(resized, "CHUNK", 2)          # 3 tasks over 2 processes: the manifest keeps sample order
        record = write_resized(datasets.open("imagefolder", root, "train"), out, workers=2)
    return root, out, record


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_the_copy_has_the_originals_files_sizes_and_order(tree):
    root, out, record = tree
    original = datasets.open("imagefolder", root, "train")
    assert not out.with_name(out.name + ".partial").exists()
    assert files_under(out) == set(FILES) | {MANIFEST, RECORD}
    for name, (source, size) in FILES.items():
        with Image.open(out / name) as im:
            assert im.size == size, name
        if size == source:     # smaller than 256 px: the original's bytes
            assert (out / name).read_bytes() == (root / "train" / name).read_bytes()
    assert record["n"] == 5 and record["resized"] == 4 and record["short_side"] == 256 and record["quality"] == 90
    manifest = pd.read_parquet(out / MANIFEST)
    assert manifest["path"].tolist() == sample_files(original) == sorted(FILES)
    assert [tuple(r) for r in manifest[["width", "height", "resized_width", "resized_height"]].to_numpy()] == \
        [(*FILES[f][0], *FILES[f][1]) for f in manifest["path"]]
    # the loader's view: the original's labels, attributes and order, the copy's pixels
    copy = ResizedImages(original, out)
    assert len(copy) == len(original.dataset) == 5
    for a, b in zip(copy.labels_and_attributes(), original.labels_and_attributes()):
        assert np.array_equal(a, b)
    assert copy.labels.tolist() == [0, 0, 1, 1, 1]
    for i, name in enumerate(sorted(FILES)):
        image, y, _, index = copy[i]
        assert (image.size, image.mode, y, index) == (FILES[name][1], "RGB", original.dataset[i][1], i)
        assert copy.source_size(i) == FILES[name][0]
    # a finished copy with the same settings is kept as it is
    stamp = (out / "a_cat/0.jpg").stat().st_mtime_ns
    assert write_resized(original, out, workers=1) == record
    assert (out / "a_cat/0.jpg").stat().st_mtime_ns == stamp
    with pytest.raises(ResizedCopyError, match="exists with other settings"):
        write_resized(original, out, quality=80, workers=1)


def test_crops_from_the_copy_match_the_originals_with_the_same_seeds_and_captions(tree):
    root, out, _ = tree
    original = datasets.open("imagefolder", root, "train")
    rows = torch.arange(2 * 7).view(2, 7) + 100            # class c, template k -> row 100 + 7c + k
    transform = SeededCropTransform(MODEL, (0.9, 1.0), uint8=True)
    before = TrainSet(original.dataset, transform, 3, rows, [[0, 1, 2], [3, 4, 5, 6]])
    after = TrainSet(ResizedImages(original, out), transform, 3, rows, [[0, 1, 2], [3, 4, 5, 6]])
    for epoch in range(3):
        for i, name in enumerate(sorted(FILES)):
            a, b = before[(epoch, i)], after[(epoch, i)]
            assert b[1:] == a[1:]                           # label, index, spurious caption's row
            assert a[0].shape == b[0].shape == (3, 224, 224) and b[0].dtype == torch.uint8
            if FILES[name][0] == FILES[name][1]:            # copied as it is: the very same crop
                assert torch.equal(a[0], b[0]), name
                continue
            diff = (a[0].double() - b[0].double()).abs()
            psnr = 10 * np.log10(255 ** 2 / float((diff ** 2).mean()))
            assert float(diff.mean()) <= MEAN_ABS and psnr >= PSNR_DB, (name, epoch, float(diff.mean()), psnr)


def test_the_crop_box_cuts_the_same_relative_region_of_the_copy(tree, monkeypatch):
    params = (37, 81, 300, 402)                              # top, left, height, width in a 500 x 375 image
    box = copy_box(params, (500, 375), (341, 256))
    assert np.allclose(np.array(box) / [341, 256, 341, 256], [81 / 500, 37 / 375, 483 / 500, 337 / 375])
    root, out, _ = tree
    original = datasets.open("imagefolder", root, "train")
    copy = ResizedImages(original, out)
    scale = (0.08, 1.0)                                      # wide crops: boxes far from the whole image
    transform = SeededCropTransform(MODEL, scale, uint8=True)
    before, after = TrainSet(original.dataset, transform, 0, None), TrainSet(copy, transform, 0, None)
    # the box PIL resamples from the copy, in fractions of the copy, is the original's box (drawn
    # from the sample's generator on the original's size) in fractions of the original
    boxes, resize = [], Image.Image.resize

    def spy(self, size, resample=None, box=None, reducing_gap=None):
        boxes.append((self.size, box))
        return resize(self, size, resample, box, reducing_gap)
    monkeypatch.setattr(Image.Image, "resize", spy)
    resized = [i for i, f in enumerate(sorted(FILES)) if FILES[f][0] != FILES[f][1]]
    for epoch in range(6):
        for i in resized:
            boxes.clear()
            after[(epoch, i)]
            (cw, ch), got = boxes[-1]
            (w, h) = copy.source_size(i)
            top, left, bh, bw = crop_params(w, h, scale, sample_rng(0, epoch, i, CROP_STREAM))
            assert np.allclose(np.array(got) / [cw, ch, cw, ch], [left / w, top / h, (left + bw) / w, (top + bh) / h],
                               rtol=0, atol=1e-12)
    monkeypatch.undo()
    # and the pixels say so: the ramp's red and green (x and y, in relative terms) of the two
    # crops agree to JPEG noise
    i = sorted(FILES).index("a_cat/1.jpg")
    gaps = [float((before[(e, i)][0].double() - after[(e, i)][0].double()).abs()[:2].mean()) for e in range(8)]
    assert max(gaps) <= 1.5, gaps


def test_a_corrupt_jpeg_names_the_file_and_leaves_no_partial_copy_then_the_rerun_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(resized, "CHUNK", 1)    # one file a task: both processes at work when it fails
    root = write_tree(tmp_path / "orig")
    bad = root / "train" / "b_dog" / "9.jpg"
    bad.write_bytes((root / "train" / "a_cat" / "1.jpg").read_bytes()[:3000])   # truncated
    out = tmp_path / "copy"
    original = datasets.open("imagefolder", root, "train")
    with pytest.raises(ResizedCopyError) as e:
        write_resized(original, out, workers=2)
    assert str(bad) in str(e.value) and "\n" not in str(e.value) and "truncated" in str(e.value)
    assert not out.exists()
    partial = out.with_name("copy.partial")
    done = files_under(partial) - {".params.json"}
    assert done <= set(FILES) and not any(f.endswith(".part") for f in files_under(partial))
    for f in done:                                          # whatever is there is complete
        with Image.open(partial / f) as im:
            im.load()
    stamps = {f: (partial / f).stat().st_mtime_ns for f in done}
    # the file mended, the rerun writes only what is missing
    Image.open(PHOTO).convert("RGB").save(bad)
    record = write_resized(datasets.open("imagefolder", root, "train"), out, workers=2)
    assert record["n"] == 6 and not partial.exists()
    assert {f: (out / f).stat().st_mtime_ns for f in done} == stamps
    assert files_under(out) == set(FILES) | {"b_dog/9.jpg", MANIFEST, RECORD}


def test_the_cli_writes_the_copy_and_names_a_bad_file(tmp_path, capsys):
    root = write_tree(tmp_path / "orig")
    main(["--reader", "imagefolder", "--root", str(root), "--split", "train", "--out", str(tmp_path / "c"),
          "--short-side", "128", "--quality", "85", "--workers", "2"])
    assert "5 images, 5 resized to short side 128" in capsys.readouterr().out
    with Image.open(tmp_path / "c" / "b_dog" / "1.jpg") as im:
        assert im.size == (171, 128)
    (root / "train" / "b_dog" / "3.jpg").write_bytes(b"not an image")
    with pytest.raises(SystemExit) as e:
        main(["--reader", "imagefolder", "--root", str(root), "--out", str(tmp_path / "d"), "--workers", "1"])
    assert str(e.value).startswith("error: ") and str(root / "train" / "b_dog" / "3.jpg") in str(e.value)
    assert not (tmp_path / "d").exists()


def test_a_waterbirds_layout_copy_keeps_its_relative_paths(tmp_path):
    root = make_dataset(tmp_path / "wb", n_per_split=(6, 2, 2))       # 32 px PNGs under images/
    original = datasets.open("waterbirds", root, "train")
    write_resized(original, tmp_path / "copy", short_side=24, workers=1)
    copy = ResizedImages(original, tmp_path / "copy")
    assert sample_files(original) == [f"images/0_{k:04d}.png" for k in range(6)]
    assert np.array_equal(copy.labels, original.dataset.labels) and np.array_equal(copy.attributes, original.dataset.attributes)
    assert copy[3][0].size == (24, 24) and copy.source_size(3) == (32, 32)


def test_the_training_loader_reads_the_copy_only_when_configured(tree, tmp_path):
    root, out, _ = tree
    original = datasets.open("imagefolder", root, "train")
    run = SimpleNamespace(dataset_cfg={"data": {"dataset": "x"}}, train_set=original)
    assert training_images(run) is original.dataset
    run.dataset_cfg["data"]["resized_copy"] = str(out)
    images = training_images(run)
    assert isinstance(images, ResizedImages)
    # the loader without workers caches decoded items: the original's size still reaches the crop
    cached = TrainSet(DecodedCache(images), SeededCropTransform(MODEL, (0.08, 1.0), uint8=True), 0, None)
    direct = TrainSet(images, SeededCropTransform(MODEL, (0.08, 1.0), uint8=True), 0, None)
    assert torch.equal(cached[(2, 1)][0], direct[(2, 1)][0])
    run.dataset_cfg["data"]["resized_copy"] = str(tmp_path / "absent")
    with pytest.raises(FinetuneConfigError, match=f"{tmp_path / 'absent'} not found: write the resized copy"):
        training_images(run)
    # decode: device reads the originals' bytes: a copy configured with it is refused, not ignored
    run = SimpleNamespace(dataset_cfg={"data": {"dataset": "x", "resized_copy": str(out)}}, train_set=original,
                          cfg=RunConfig.from_dict({"name": "flyp", "method": "flyp", "decode": "device", "batch_size": 2}),
                          ctx=SimpleNamespace(world_size=1),
                          captions=SimpleNamespace(spurious_rows=None, spurious_groups=None), seed=0)
    with pytest.raises(FinetuneConfigError, match="datasets.x.resized_copy is read by `finetune.decode: cpu` only"):
        train_loader(run)


def test_the_config_key_is_opt_in_and_reaches_the_fine_tune_job():
    import yaml
    raw = {}
    for f in ("config/synthbirds.yaml", "config/paper.yaml"):
        stage_config.merge(raw, yaml.safe_load(Path(f).read_text()))
    plain = stage_config.validate(raw)
    assert plain["datasets"]["imagenet"]["resized_copy"] is None
    assert "resized_copy" not in stage_config.train_job(plain, "imagenet")["data"]
    raw["datasets"]["imagenet"]["resized_copy"] = {}
    cfg = stage_config.validate(raw)
    assert cfg["datasets"]["imagenet"]["resized_copy"] == {"split": "train", "short_side": 256, "quality": 90}
    assert stage_config.train_job(cfg, "imagenet")["data"]["resized_copy"] == "data/imagenet/resized_train"
    raw["datasets"]["imagenet"]["resized_copy"] = {"quality": 100}
    with pytest.raises(stage_config.ConfigError, match="resized_copy"):
        stage_config.validate(raw)

