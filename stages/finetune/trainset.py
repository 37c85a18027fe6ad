"""Training data: images with per-sample seeded augmentation and spurious-caption draws.

Every random choice about sample i in epoch e (its RandomResizedCrop and its spurious caption) is
drawn from a generator seeded by (seed, e, i), and the order of samples by (seed, e) through
DistributedSampler. Hence a run's batches do not depend on the number of data-loader workers, a
resumed run sees exactly the batches the interrupted one would have, and W processes under
torchrun see, together, the same global batches as one process (each rank a slice of them).
"""

from __future__ import annotations

import math

import numpy as np
import open_clip
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from ..datasets.waterbirds import GroupDataset

CROP_STREAM, CAPTION_STREAM = 0, 1
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect-ratio range, as open_clip uses it


def sample_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index, stream])


def crop_params(width: int, height: int, scale, rng: np.random.Generator, ratio=RATIO):
    """torchvision's RandomResizedCrop.get_params with an explicit generator."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # fallback: the whole image cropped to the nearest allowed ratio, centred (as torchvision)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class SeededCropTransform:
    """RandomResizedCrop(scale) + the model's normalisation, drawing from a given generator."""

    def __init__(self, model, scale):
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg["size"]
        self.size = list(size) if isinstance(size, (tuple, list)) else [size, size]
        self.scale = tuple(scale)
        self.interpolation = (InterpolationMode.BILINEAR if cfg.get("interpolation") == "bilinear"
                              else InterpolationMode.BICUBIC)
        self.mean, self.std = list(cfg["mean"]), list(cfg["std"])

    def __call__(self, image, rng: np.random.Generator) -> torch.Tensor:
        image = image.convert("RGB")
        i, j, h, w = crop_params(image.width, image.height, self.scale, rng)
        image = TF.resized_crop(image, i, j, h, w, self.size, self.interpolation, antialias=True)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)


class FixedTransform:
    """The evaluation transform (no augmentation): the generator is ignored."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image, rng) -> torch.Tensor:
        return self.transform(image)


def draw_template(rng: np.random.Generator, n_templates: int, groups: list[list[int]] | None) -> int:
    """A sample's spurious template: uniform over all `n_templates`, or, given `groups` (the
    templates of each spurious type), a type uniformly and then one of its templates uniformly."""
    if groups is None:
        return int(rng.integers(n_templates))
    group = groups[int(rng.integers(len(groups)))]
    return group[int(rng.integers(len(group)))]


class TrainSet(torch.utils.data.Dataset):
    """Items (image, y, index, spurious_row) for keys (epoch, index) given by `EpochSampler`.

    `spurious_rows[c, k]` is the row, in the embeddings table, of spurious template k filled with
    class c; each sample draws k by `draw_template` (-1 when the method needs no spurious caption).
    """

    def __init__(self, images: GroupDataset, transform, seed: int, spurious_rows: torch.Tensor | None,
                 spurious_groups: list[list[int]] | None = None):
        self.images, self.transform, self.seed = images, transform, seed
        self.spurious_rows, self.spurious_groups = spurious_rows, spurious_groups

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        epoch, i = key
        image, y, _, _ = self.images[i]
        image = self.transform(image, sample_rng(self.seed, epoch, i, CROP_STREAM))
        spurious = -1
        if self.spurious_rows is not None:
            k = draw_template(sample_rng(self.seed, epoch, i, CAPTION_STREAM), self.spurious_rows.shape[1],
                              self.spurious_groups)
            spurious = int(self.spurious_rows[y, k])
        return image, y, i, spurious


class DecodedCache(torch.utils.data.Dataset):
    """A data set's items kept after their first decoding, while their pixels fit in `max_bytes`:
    a small training set (the synthetic world's 32 px images) is decoded once per run instead of
    once per epoch. For a loader without workers: each worker would hold its own copy."""

    def __init__(self, images: torch.utils.data.Dataset, max_bytes: int = 1 << 30):
        self.images, self.budget, self.items = images, max_bytes, {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        item = self.items.get(i)
        if item is None:
            item = self.images[i]
            image = item[0]
            size = image.width * image.height * len(image.getbands())
            if size <= self.budget:
                self.budget -= size
                self.items[i] = item
        return item


class EpochSampler(torch.utils.data.distributed.DistributedSampler):
    """DistributedSampler that yields (epoch, index), so that the epoch reaches persistent workers."""

    def __iter__(self):
        return ((self.epoch, i) for i in super().__iter__())
