"""Device decode path (stages.finetune.decode) on the CPU: the same crops, captions and (to rounding)
pixels as the PIL path; PNG, grey and CMYK files; workers that only read bytes."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_dataset, make_tiny_clip
from stages import datasets
from stages.datasets import DataError, ImageList
from stages.finetune import decode as decode_mod
from stages.finetune import trainset as trainset_mod
from stages.finetune.decode import (DeviceCropDecoder, EncodedTrainSet, collate_encoded, decode_batch,
                                    device_decodable)
from stages.finetune.trainset import CROP_STREAM, EpochSampler, SeededCropTransform, TrainSet, crop_params, sample_rng
from stages.method.models import load_clip

SCALE, SEED = (0.5, 1.0), 3


def photo(rng, width, height):
    """Photo-like pixels: a smooth colour field plus fine texture."""
    coarse = rng.integers(0, 256, (height // 10 + 1, width // 10 + 1, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    return np.clip(field + rng.normal(0, 12, (height, width, 1)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(0)
    files = []
    for k, (w, h) in enumerate([(80, 60), (60, 90), (100, 100), (70, 50)]):
        path = tmp / f"rgb_{k}.JPEG"
        Image.fromarray(photo(rng, w, h)).save(path, quality=90)
        files.append(path)
    grey = tmp / "grey.JPEG"
    Image.fromarray(photo(rng, 50, 40)[..., 0]).save(grey, quality=90)
    cmyk = tmp / "cmyk.JPEG"
    Image.fromarray(np.concatenate([photo(rng, 50, 40), photo(rng, 50, 40)[..., :1]], 2), "CMYK").save(cmyk)
    png = tmp / "palette.png"                                   # a PNG, palette mode, as some data sets have
    Image.fromarray(photo(rng, 40, 30)).convert("P").save(png)
    progressive = tmp / "progressive.JPEG"
    Image.fromarray(photo(rng, 64, 48)).save(progressive, quality=85, progressive=True)
    images = ImageList([(str(p), k % 2, 0) for k, p in enumerate(files)])
    clip = load_clip(make_tiny_clip(tmp / "clip"))            # input 32 px, bicubic, OpenAI mean/std
    return dict(tmp=tmp, images=images, files=files, grey=grey, cmyk=cmyk, png=png, progressive=progressive,
                model=clip.model, preprocess_val=clip.preprocess_val)


def read(paths):
    return [torch.from_numpy(np.fromfile(p, np.uint8)) for p in paths]


def pil_rgb(path):
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------
# (a) a function of (seed, epoch, index)


def test_same_key_same_tensor_other_epoch_other_crop(world):
    dec = DeviceCropDecoder(world["model"], SCALE, SEED, "cpu")
    data, index = read(world["files"]), torch.arange(4)
    a = dec(data, index, torch.zeros(4, dtype=torch.long))
    b = dec(data, index, torch.zeros(4, dtype=torch.long))
    c = dec(data, index, torch.ones(4, dtype=torch.long))
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, b)
    assert all(not torch.equal(a[k], c[k]) for k in range(4))
    # a sample's tensor does not depend on the batch it comes in
    alone = dec(data[2:3], index[2:3], torch.zeros(1, dtype=torch.long))
    assert torch.equal(alone[0], a[2])


# ---------------------------------------------------------------------------------------------
# (b) the PIL path's crop box, and its pixels to rounding


def test_crop_box_is_the_pil_paths(world, monkeypatch):
    """Both paths call crop_params; record every box each draws for the same keys."""
    boxes = {"pil": [], "device": []}

    def recorder(name):
        def record(*args, **kw):
            box = crop_params(*args, **kw)
            boxes[name].append(box)
            return box
        return record

    monkeypatch.setattr(trainset_mod, "crop_params", recorder("pil"))
    monkeypatch.setattr(decode_mod, "crop_params", recorder("device"))
    pil = SeededCropTransform(world["model"], SCALE)
    dec = DeviceCropDecoder(world["model"], SCALE, SEED, "cpu")
    keys = [(e, i) for e in range(3) for i in range(4)]
    for e, i in keys:
        with Image.open(world["files"][i]) as im:
            pil(im, sample_rng(SEED, e, i, CROP_STREAM))
    dec(read([world["files"][i] for _, i in keys]), torch.tensor([i for _, i in keys]),
        torch.tensor([e for e, _ in keys]))
    assert boxes["pil"] == boxes["device"] and len(set(boxes["pil"])) == len(keys)
    for (e, i), box in zip(keys, boxes["device"]):
        with Image.open(world["files"][i]) as im:
            w, h = im.size
        assert dec.box(w, h, i, e) == box == crop_params(w, h, SCALE, sample_rng(SEED, e, i, CROP_STREAM))


# Tolerance. On the CPU both paths decode with libjpeg-turbo (torchvision's decode_jpeg and PIL give
# bit-identical pixels: test_png_grey_and_cmyk_come_out_rgb checks it), and the crop box is the
# same, so what is left is the resize. PIL's antialiased bicubic and torch's (antialias=True) use
# the same filter (cubic a = -0.5, support scaled by the downsampling factor).
# - float resize (uint8_resize False: CUDA's arithmetic, run here on the CPU): PIL computes in fixed
#   point and rounds to uint8 (after each separable pass, and at the end), torch in float32.
#   Rounding to uint8 is an error uniform in +-0.5 grey levels, mean |e| = 0.25 levels = 0.25 / 255
#   / std (std >= 0.261) = 0.0038 normalised units; the intermediate rounding, spread by the second
#   pass (sum |w| <= ~1.2), adds well under that again. So: mean abs difference < 0.01 (0.7
#   levels, ~2.5x the expected 0.004), max abs < 0.1 (7 levels: intermediate rounding plus the
#   clipping of the first pass's overshoot at sharp edges). nvJPEG adds its own +-1-2 levels on
#   CUDA; not tested here.
# - uint8 resize (the CPU default): torch's uint8 kernel is Pillow-SIMD's fixed-point arithmetic,
#   so the pixels agree but for an occasional +-1 level (1 / 255 / 0.261 = 0.015): mean < 0.001.
MEAN_TOL, MAX_TOL = 0.01, 0.1
UINT8_MEAN_TOL = 0.001


@pytest.mark.parametrize("uint8_resize", [True, False])
def test_pixels_match_the_pil_path(world, uint8_resize):
    pil = SeededCropTransform(world["model"], SCALE)
    dec = DeviceCropDecoder(world["model"], SCALE, SEED, "cpu")
    dec.uint8_resize = uint8_resize
    keys = [(e, i) for e in range(2) for i in range(4)]
    ref = []
    for e, i in keys:
        with Image.open(world["files"][i]) as im:
            ref.append(pil(im, sample_rng(SEED, e, i, CROP_STREAM)))
    out = dec(read([world["files"][i] for _, i in keys]), torch.tensor([i for _, i in keys]),
              torch.tensor([e for e, _ in keys]))
    diff = (out - torch.stack(ref)).abs()
    assert diff.mean() < (UINT8_MEAN_TOL if uint8_resize else MEAN_TOL) and diff.max() < MAX_TOL, \
        (diff.mean(), diff.max())


@pytest.mark.parametrize("uint8_resize", [True, False])
def test_evaluation_transform_matches_preprocess_val(world, uint8_resize):
    dec = DeviceCropDecoder(world["model"], None, SEED, "cpu", augment=False)
    dec.uint8_resize = uint8_resize
    paths = world["files"]
    out = dec(read(paths), torch.arange(4), torch.zeros(4, dtype=torch.long))
    ref = []
    for p in paths:
        with Image.open(p) as im:
            ref.append(world["preprocess_val"](im))
    diff = (out - torch.stack(ref)).abs()
    assert out.shape == (4, 3, 32, 32) and diff.mean() < (UINT8_MEAN_TOL if uint8_resize else MEAN_TOL) \
        and diff.max() < MAX_TOL, (diff.mean(), diff.max())
    assert torch.equal(out, dec(read(paths), torch.arange(4), torch.ones(4, dtype=torch.long)))  # no randomness


# ---------------------------------------------------------------------------------------------
# (c) PNG, grey and CMYK files come out RGB


def test_png_grey_and_cmyk_come_out_rgb(world):
    paths = [world["png"], world["grey"], world["cmyk"], world["progressive"], world["files"][0]]
    assert [device_decodable(d) for d in read(paths)] == [False, True, False, True, True]
    decoded = decode_batch(read(paths), torch.device("cpu"))
    for p, image in zip(paths, decoded):
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert torch.equal(image, pil_rgb(p)), p                 # the CPU decoders are PIL's, all formats
    dec = DeviceCropDecoder(world["model"], SCALE, SEED, "cpu")
    out = dec(read(paths), torch.arange(5), torch.zeros(5, dtype=torch.long))
    assert out.shape == (5, 3, 32, 32) and torch.isfinite(out).all()


def test_unreadable_image_names_the_sample(world):
    bad = torch.from_numpy(np.fromfile(world["files"][0], np.uint8)[:200].copy())
    dec = DeviceCropDecoder(world["model"], SCALE, SEED, "cpu")
    with pytest.raises(DataError, match="training sample 7"):
        dec(read(world["files"][:1]) + [bad], torch.tensor([0, 7]), torch.zeros(2, dtype=torch.long))
    images = ImageList([(str(world["tmp"] / "missing.JPEG"), 0, 0)])
    with pytest.raises(DataError, match="missing.JPEG"):
        EncodedTrainSet(images, SEED, None)[(0, 0)]


# ---------------------------------------------------------------------------------------------
# (d) the spurious caption TrainSet draws


@pytest.mark.parametrize("groups", [None, [[0, 1, 2, 3, 4], [4, 5, 6]]])
def test_spurious_row_is_trainsets(world, groups):
    root = make_dataset(world["tmp"] / f"data_{groups is None}", n_per_split=(12, 0, 0))
    images = datasets.open("waterbirds", root, "train").dataset
    rows = torch.arange(14).view(2, 7)
    plain = TrainSet(images, lambda image, rng: 0, SEED, rows, groups)
    encoded = EncodedTrainSet(images, SEED, rows, groups)
    assert len(encoded) == len(plain) == 12
    for e in range(4):
        for i in range(12):
            _, y, index, spurious = plain[(e, i)]
            data, y2, index2, spurious2, epoch = encoded[(e, i)]
            assert (y2, index2, spurious2, epoch) == (y, index, spurious, e)
            assert torch.equal(data, torch.from_numpy(np.fromfile(images.path(i), np.uint8)))
    assert EncodedTrainSet(images, SEED, None)[(0, 1)][3] == -1


# ---------------------------------------------------------------------------------------------
# (e) DataLoader workers that only read bytes


def test_dataloader_with_two_workers(world):
    ts = EncodedTrainSet(world["images"], SEED, torch.arange(6).view(2, 3))
    sampler = EpochSampler(ts, num_replicas=1, rank=0, shuffle=True, seed=SEED)
    sampler.set_epoch(5)
    loader = torch.utils.data.DataLoader(ts, batch_size=2, sampler=sampler, num_workers=2,
                                         collate_fn=collate_encoded, timeout=60)  # a lost batch fails, not hangs
    dec = DeviceCropDecoder(world["model"], SCALE, SEED, "cpu")
    seen = []
    for data, y, index, spurious, epoch in loader:
        assert isinstance(data, list) and all(d.dtype == torch.uint8 and d.dim() == 1 for d in data)
        assert len({d.untyped_storage().data_ptr() for d in data}) == 1   # one buffer per batch
        assert y.dtype == index.dtype == spurious.dtype == epoch.dtype == torch.int64
        assert epoch.tolist() == [5, 5] and y.tolist() == [world["images"].labels[i] for i in index.tolist()]
        images = dec(data, index, epoch)
        for k, i in enumerate(index.tolist()):
            one = ts[(5, i)]
            assert spurious[k] == one[3]
            assert torch.equal(images[k], dec([one[0]], torch.tensor([i]), torch.tensor([5]))[0])
        seen += index.tolist()
    assert sorted(seen) == [0, 1, 2, 3]
