"""Images per second per CPU core of the training loader's decode + crop, for several decoders.

    python bench/loader.py                 # 200 JPEGs of 500x375, every decoder available
    python bench/loader.py --n 500 --seconds 5

One process, one thread (torch.set_num_threads(1)), no DataLoader: the rate is what one loader
worker (one core) delivers, so `target / rate` is the number of workers (cores) one GPU needs.
Every path: read the JPEG file, decode, RandomResizedCrop to 224 px (scale 0.9-1, as the paper's
recipe), float + CLIP normalisation; the output is the [3, 224, 224] float tensor a model eats.

  pil_v1        PIL decode, torchvision.transforms (v1) bicubic crop, ToTensor, Normalize:
                open_clip's / FLYP's training transform
  pil_v2        PIL decode, transforms.v2 bicubic crop on the PIL image, then to tensor
  tv_decode     torchvision.io.decode_jpeg on the CPU, v2 bilinear (antialiased) crop on the
                uint8 tensor, then float
  cuda_decode   torchvision.io.decode_jpeg(device="cuda") on batches of files (the CPU only reads
                bytes), crop and normalise on the GPU; its rate is per GPU, not per core
                (skipped without CUDA)
  train_float   the training loader's PIL path as it was before issue 18 (stages.finetune.trainset:
                SeededCropTransform, the sample's seeded crop box, ToTensor, Normalize): float32
  train_uint8   the same path as it is now (SeededCropTransform(uint8=True)): the worker stops at
                the cropped uint8 pixels; DeviceNormalize runs in the training process (not timed
                here: on the GPU it is one elementwise pass over the batch)
  device_decode the training path of `finetune.decode: device` (stages.finetune.decode): read the
                bytes and collate_encoded (what a loader worker does), then DeviceCropDecoder:
                one batched decode_jpeg, each sample's seeded crop box, antialiased bicubic resize
                in float, normalisation. device_decode (cpu): all of it on this one core, a rate
                per core; device_decode (cuda): decode and crop on the GPU, a rate per GPU with
                one reading core (skipped without CUDA)
  train_uint8 (reader, originals / resized copy)
                the training loader's item (TrainSet: reader, seeded crop, uint8) on the split as
                the imagefolder reader opens it, and on its resized copy (stages.datasets.resized:
                short side 256, JPEG quality 90, the same crop box in relative terms), side by side
                in one run; the copy's one-off writing rate is printed below the table

The images are synthetic (smooth colour fields plus texture, ~ImageNet's bytes per pixel), written
to a temporary folder; files are read from the page cache. On a shared machine the numbers are
noisy: compare the ratios, not the third digit.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as v1
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms import v2

from stages.toys import write_jpegs

MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation (open_clip's constants)
STD = (0.26862954, 0.26130258, 0.27577711)
SIZE, SCALE = 224, (0.9, 1.0)
FLYP_RATE = 1600  # images/s of FLYP's ViT-B/16 step on one H200 (issue 8)
BATCH = 128       # images per batch of the batched (device) paths


def pil_v1():
    tf = v1.Compose([v1.RandomResizedCrop(SIZE, scale=SCALE, interpolation=v1.InterpolationMode.BICUBIC),
                     v1.ToTensor(), v1.Normalize(MEAN, STD)])

    def run(path):
        with Image.open(path) as im:
            return tf(im.convert("RGB"))
    return run


def pil_v2():
    tf = v2.Compose([v2.RandomResizedCrop(SIZE, scale=SCALE, interpolation=v2.InterpolationMode.BICUBIC),
                     v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])

    def run(path):
        with Image.open(path) as im:
            return tf(im.convert("RGB"))
    return run


def tv_decode():
    tf = v2.Compose([v2.RandomResizedCrop(SIZE, scale=SCALE, antialias=True),  # bilinear
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])

    def run(path):
        return tf(decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB))
    return run


def device_decode(device: str):
    """A pass over the files as `finetune.decode: device` makes it: per batch, read the bytes
    and collate (a loader worker's share), then DeviceCropDecoder (the training process's)."""
    from stages.finetune.decode import DeviceCropDecoder, collate_encoded

    # the model only lends its preprocess config: OpenAI CLIP's 224 px, bicubic
    model = SimpleNamespace(preprocess_cfg={"size": SIZE, "mean": MEAN, "std": STD, "interpolation": "bicubic"})
    decoder = DeviceCropDecoder(model, SCALE, seed=0, device=device)
    epoch = [0]

    def run_pass(paths):
        epoch[0] += 1                                   # new crops every pass, as every epoch
        out = None
        for start in range(0, len(paths), BATCH):
            items = [(torch.from_numpy(np.fromfile(p, np.uint8)), 0, start + k, -1, epoch[0])
                     for k, p in enumerate(paths[start:start + BATCH])]
            data, _, index, _, epochs = collate_encoded(items)
            out = decoder(data, index, epochs)
        if out.is_cuda:
            torch.cuda.synchronize()
        return out
    return run_pass


def train_path(uint8: bool):
    """The training loader's PIL path, float32 (before issue 18) or uint8 (now), per image."""
    from stages.finetune.trainset import CROP_STREAM, SeededCropTransform, sample_rng

    model = SimpleNamespace(preprocess_cfg={"size": SIZE, "mean": MEAN, "std": STD, "interpolation": "bicubic"})
    transform = SeededCropTransform(model, SCALE, uint8=uint8)
    count = [0]

    def run(path):
        count[0] += 1
        with Image.open(path) as im:
            out = transform(im, sample_rng(0, 0, count[0], CROP_STREAM))
        return out if not uint8 else out.float()      # the benchmark's shape/dtype check only
    return run


def reader_sets(root: Path, out: Path):
    """The images under root/train/c/ through the training loader's own classes: the split as its
    reader opens it, its resized copy (stages.datasets.resized, written here on one core: seconds
    returned) and the TrainSet of each (the item a loader worker makes, uint8 crop)."""
    from stages import datasets
    from stages.datasets.resized import ResizedImages, write_resized
    from stages.finetune.trainset import SeededCropTransform, TrainSet

    model = SimpleNamespace(preprocess_cfg={"size": SIZE, "mean": MEAN, "std": STD, "interpolation": "bicubic"})
    transform = SeededCropTransform(model, SCALE, uint8=True)
    original = datasets.open("imagefolder", root, "train")
    start = time.perf_counter()
    write_resized(original, out, workers=1)
    seconds = time.perf_counter() - start
    copy = ResizedImages(original, out)
    return TrainSet(original.dataset, transform, 0, None), TrainSet(copy, transform, 0, None), seconds


def trainset_pass(trainset):
    """A pass over a TrainSet's items, a new epoch (new crops) each pass."""
    epoch = [0]

    def run_pass(paths):
        epoch[0] += 1
        out = None
        for i in range(len(trainset)):
            out = trainset[(epoch[0], i)][0]
        return out.float()                              # the benchmark's shape/dtype check only
    return run_pass


def per_image(run):
    """A pass over the files, one image at a time."""
    def run_pass(paths):
        out = None
        for p in paths:
            out = run(p)
        return out
    return run_pass


def time_round_robin(runs: dict, paths, seconds: float) -> dict[str, list[float]]:
    """Images/s of each decoder (a function of the file list, one pass), one pass over the files
    each in turn (after a warm-up pass), until every decoder has had >= 3 passes and >= `seconds`:
    a load spike from another process then hits all decoders alike instead of whichever was
    running."""
    for run in runs.values():
        run(paths)
    rates = {name: [] for name in runs}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds * len(runs) or min(map(len, rates.values())) < 3:
        for name, run in runs.items():
            t = time.perf_counter()
            out = run(paths)
            rates[name].append(len(paths) / (time.perf_counter() - t))
            assert out.shape[-3:] == (3, SIZE, SIZE) and out.dtype == torch.float32
    return rates


def time_cuda(paths, seconds: float, batch: int = BATCH) -> list[float]:
    """Batched GPU decode: the CPU reads the bytes, the GPU decodes, crops and normalises."""
    device = torch.device("cuda")
    crop = v2.RandomResizedCrop(SIZE, scale=SCALE, antialias=True)
    mean = torch.tensor(MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(STD, device=device).view(3, 1, 1)

    def run_all():
        out = None
        for i in range(0, len(paths), batch):
            data = [read_file(str(p)) for p in paths[i:i + batch]]
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
            out = torch.stack([crop(im) for im in images]).float().div_(255).sub_(mean).div_(std)
        torch.cuda.synchronize()
        return out

    run_all()
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 3:
        t = time.perf_counter()
        out = run_all()
        rates.append(len(paths) / (time.perf_counter() - t))
    assert out.shape[1:] == (3, SIZE, SIZE)
    return rates


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="number of JPEGs (default 200)")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per decoder")
    p.add_argument("--target", type=float, default=FLYP_RATE,
                   help=f"images/s one GPU consumes (default {FLYP_RATE}: FLYP ViT-B/16, H200)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train" / "c").mkdir(parents=True)
        paths = write_jpegs(Path(tmp) / "train" / "c", a.n)
        original_set, resized_set, write_s = reader_sets(Path(tmp), Path(tmp) / "resized_train")
        resized_kb = statistics.mean(p.stat().st_size for p in (Path(tmp) / "resized_train" / "c").iterdir()) / 1024
        kb = statistics.mean(p.stat().st_size for p in paths) / 1024
        print(f"{a.n} JPEGs of 500x375 (mean {kb:.0f} KiB), crop to {SIZE} px; torch "
              f"{torch.__version__}, torchvision {torchvision.__version__}, Pillow {Image.__version__}; "
              f"1 thread; median of >= 3 passes each, decoders in turn, >= {a.seconds:g} s each\n")
        runs = {"pil_v1": per_image(pil_v1()), "pil_v2": per_image(pil_v2()), "tv_decode": per_image(tv_decode()),
                "train_float": per_image(train_path(False)), "train_uint8": per_image(train_path(True)),
                "device_decode (cpu)": device_decode("cpu"),
                "train_uint8 (reader, originals)": trainset_pass(original_set),
                "train_uint8 (reader, resized copy)": trainset_pass(resized_set)}
        rows = {name: statistics.median(r) for name, r in time_round_robin(runs, paths, a.seconds).items()}
        cuda = device_cuda = None
        if torch.cuda.is_available():
            cuda = statistics.median(time_cuda(paths, a.seconds))
            device_cuda = statistics.median(time_round_robin({"cuda": device_decode("cuda")}, paths,
                                                             a.seconds)["cuda"])
    base = rows["pil_v1"]
    print(f"| decoder | images/s per core | vs pil_v1 | cores per GPU at {a.target:g} images/s |")
    print("|---|---:|---:|---:|")
    for name, rate in rows.items():
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x | {math.ceil(a.target / rate)} |")
    if cuda is None:
        print("| cuda_decode | skipped: no CUDA device | | |")
    else:
        print(f"| cuda_decode (per GPU, 1 reading core) | {cuda:.0f} | {cuda / base:.2f}x | "
              f"{'1' if cuda >= a.target else math.ceil(a.target / cuda)} |")
    if device_cuda is None:
        print("| device_decode (cuda) | skipped: no CUDA device | | |")
    else:
        print(f"| device_decode (cuda, per GPU, 1 reading core) | {device_cuda:.0f} | {device_cuda / base:.2f}x | "
              f"{'1' if device_cuda >= a.target else math.ceil(a.target / device_cuda)} |")
    # shared memory of the training loader (stages.finetune.shm): the paper's 12 workers, batch 512
    sample = 3 * SIZE * SIZE
    before, after = 12 * 4 * 512 * 4 * sample, (12 * 2 + 1) * 512 * sample
    print(f"\ntraining loader's shared memory, 12 workers, batch 512 of {SIZE} px: before (float32, prefetch 4: "
          f"12 x 4 batches) {before / 2**30:.1f} GiB; now (uint8, prefetch 2: 12 x 2 + 1 batches) "
          f"{after / 2**30:.2f} GiB")
    before, after = rows["train_uint8 (reader, originals)"], rows["train_uint8 (reader, resized copy)"]
    print(f"\nresized copy (short side 256, quality 90; mean {resized_kb:.0f} KiB a file against {kb:.0f}): the "
          f"training loader's item {after:.0f} images/s per core against {before:.0f} on the originals "
          f"({after / before:.2f}x, same run): {a.target / before:.1f} -> {a.target / after:.1f} cores per GPU at "
          f"{a.target:g} images/s. Writing the copy: {a.n / write_s:.0f} images/s per core, one pass "
          f"(ImageNet train: {1_281_167 / (a.n / write_s) / 3600:.1f} core-hours)")
    best = max(rows, key=rows.get)
    print(f"\nfeeding {a.target:g} images/s takes {a.target / base:.1f} cores with pil_v1 and "
          f"{a.target / rows[best]:.1f} with {best} (workers per GPU; the machine is shared: noisy)")


if __name__ == "__main__":
    main()
