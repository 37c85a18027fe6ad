"""The training loader that fits any container (issue 18): uint8 batches from the workers,
normalised on the device to exactly today's float batches, prefetch 2, and the shared memory it
needs checked against /dev/shm before the first batch (one line instead of a bus error)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cfg, tiny_world
from PIL import Image

from stages import datasets
from stages.finetune import distributed, shm
from stages.finetune.decode import EncodedTrainSet, mean_file_bytes
from stages.finetune.runs import FinetuneConfigError
from stages.finetune.setup import LABEL_BYTES, open_split, prepare, train_loader
from stages.finetune.train import train
from stages.finetune.trainset import (
    DeviceNormalize,
    FixedTransform,
    SeededCropTransform,
    TrainSet,
    uint8_eval_transform,
)
from stages.method.models import load_clip

# DeviceNormalize runs ToTensor's and Normalize's float32 operations (x / 255, - mean, / std) in
# their order on the same uint8 values PIL's resize produced (PIL rounds to uint8 before ToTensor
# either way): no extra rounding, so the two agree to the last bit on the CPU. On another device
# the division may round differently in the last place: 2 ulp of values below 2.2 (|(0 - 0.48) /
# 0.27| at most) is < 1e-6.
ATOL = 1e-6


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("loader")
    cfg, emb = tiny_world(tmp)      # 16 training images of 32 px, batch 8
    return tmp, cfg, emb


# ---------------------------------------------------------------------------------------------
# Shared memory


def test_shared_memory_formula_and_the_one_line_refusal():
    sample = 3 * 224 * 224 + LABEL_BYTES
    # the paper's ImageNet loader: 12 workers x prefetch 2 (+1 held) batches of 512 uint8 images
    need = shm.check_loader_memory("imagenet", 12, 2, 512, sample, processes=1, available=10 << 30)
    assert need == 25 * 512 * (150528 + 40) == 1_927_270_400       # ~1.8 GiB (float32: 7.2 GiB)
    assert shm.check_loader_memory("x", 0, 2, 512, sample, available=0) == 0   # no workers, no shm
    # 8 processes of one machine share its /dev/shm
    assert shm.loader_bytes(12, 2, 512 * sample, processes=8) == 8 * need
    with pytest.raises(shm.SharedMemoryError) as e:
        shm.check_loader_memory("finetune (the training loader)", 12, 2, 512, sample, processes=1,
                                path="/dev/shm", available=64 << 20)     # docker's default
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, FinetuneConfigError)
    assert "1.79 GiB" in msg and "/dev/shm offers 64.0 MiB" in msg
    assert "set finetune.num_workers: 0" in msg and "--shm-size=2g" in msg
    # a size that fits some workers names how many: (12 workers x 2 + 1) batches do not fit in
    # 1 GiB, (6 x 2 + 1) = 13 batches of 77 MB do
    with pytest.raises(shm.SharedMemoryError, match=r"set finetune\.num_workers to 6 or fewer"):
        shm.check_loader_memory("x", 12, 2, 512, sample, processes=1, available=1 << 30)
    assert shm.loader_bytes(6, 2, 512 * sample) <= 1 << 30 < shm.loader_bytes(7, 2, 512 * sample)


def test_available_bytes_reads_the_file_system(tmp_path):
    import os
    st = os.statvfs(tmp_path)
    assert abs(shm.available_bytes(str(tmp_path)) - st.f_bavail * st.f_frsize) < 64 << 20   # others write too
    assert shm.available_bytes(str(tmp_path / "absent")) is None


def test_a_too_small_dev_shm_stops_the_run_before_its_first_batch(world, monkeypatch):
    tmp, cfg, emb = world
    seen = []

    def tiny_shm(path=shm.SHM_PATH):
        seen.append(path)
        return 100_000                      # 100 kB: less than one batch of 8 x 3 x 32 x 32
    monkeypatch.setattr(shm, "available_bytes", tiny_shm)
    rc = run_cfg(cfg["finetune"], "flyp", num_workers=2)
    with pytest.raises(shm.SharedMemoryError, match=r"needs 120\.\d KiB|needs 0\.1 MiB") as e:
        train(cfg, rc, 0, emb, tmp / "shm_small", progress=False)
    assert seen == ["/dev/shm"] and "\n" not in str(e.value)
    need = 5 * 8 * (3 * 32 * 32 + LABEL_BYTES)        # (2 workers x prefetch 2 + 1) batches of 8
    assert f"{need / (1 << 20):.1f} MiB" in str(e.value) and "offers 0.1 MiB" in str(e.value)
    assert not (tmp / "shm_small" / "checkpoint.pt").exists()
    # without workers the training process loads its own batches: no shared memory, no check
    train(cfg, run_cfg(cfg["finetune"], "flyp", num_workers=0, epochs=1), 0, emb, tmp / "shm_none", progress=False)
    assert (tmp / "shm_none" / "checkpoint.pt").exists()


# ---------------------------------------------------------------------------------------------
# uint8 batches


def test_uint8_items_normalised_equal_the_float_items(world):
    _, cfg, _ = world
    clip = load_clip(cfg["model"]["name"])
    images = datasets.open("waterbirds", cfg["data"]["root"], "train").dataset
    transform = SeededCropTransform(clip.model, (0.5, 1.0))
    floats = TrainSet(images, transform, 3, None)
    uint8 = TrainSet(images, SeededCropTransform(clip.model, (0.5, 1.0), uint8=True), 3, None)
    normalize = DeviceNormalize(transform.mean, transform.std, torch.device("cpu"))
    for key in [(0, 0), (0, 5), (1, 5), (2, 11)]:
        a, b = floats[key], uint8[key]
        assert b[0].dtype == torch.uint8 and b[1:] == a[1:]       # same crop draw, label, index
        assert torch.allclose(normalize(b[0][None])[0], a[0], rtol=0, atol=ATOL)
    # the evaluation transform (augment: false), on an image of another size and mode
    pil, mean, std = uint8_eval_transform(clip.preprocess_val)
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 70), dtype=np.uint8), "L")
    out = pil(grey)
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)
    assert torch.allclose(DeviceNormalize(mean, std, "cpu")(out[None])[0], clip.preprocess_val(grey), rtol=0, atol=ATOL)
    with pytest.raises(TypeError, match="uint8"):
        normalize(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("augment", [True, False])
def test_the_training_loader_gives_uint8_from_workers_and_todays_batches(world, augment):
    tmp, cfg, emb = world
    rc = run_cfg(cfg["finetune"], "starft", num_workers=2, augment=augment)
    run = prepare(cfg, rc, 4, Path(emb), tmp / f"loader_{augment}", distributed.Context(), open_split(cfg, "train"))
    loader, sampler, to_batch = train_loader(run)
    assert loader.num_workers == 2 and loader.prefetch_factor == 2
    sampler.set_epoch(1)
    raw = next(iter(loader))
    assert raw[0].dtype == torch.uint8 and raw[0].shape == (8, 3, 32, 32)
    images, y, index, spurious = to_batch(raw)
    # today's float path: the same TrainSet items with the normalising transform
    transform = SeededCropTransform(run.teacher, rc.crop_scale) if augment else FixedTransform(run.clip.preprocess_val)
    today = TrainSet(run.train_set.dataset, transform, 4, run.captions.spurious_rows, run.captions.spurious_groups)
    items = [today[(1, int(i))] for i in index]
    assert torch.allclose(images, torch.stack([it[0] for it in items]), rtol=0, atol=ATOL)
    assert y.tolist() == [it[1] for it in items] and spurious.tolist() == [it[3] for it in items]
    assert images.dtype == torch.float32 and not torch.equal(images, images.round())


def test_encoded_samples_are_sized_from_their_files(world):
    _, cfg, _ = world
    images = datasets.open("waterbirds", cfg["data"]["root"], "train").dataset
    encoded = EncodedTrainSet(images, 0, None)
    sizes = [Path(encoded.path(i)).stat().st_size for i in range(len(encoded))]
    assert mean_file_bytes(encoded) == int(np.mean(sizes))             # 16 files: all of them
    assert mean_file_bytes(encoded, k=2) == int(np.mean([sizes[0], sizes[-1]]))
