"""Training data: images with per-sample seeded augmentation and spurious-caption draws.

Every random choice about sample i in epoch e (its RandomResizedCrop and its spurious caption) is
drawn from a generator seeded by (seed, e, i), and the order of samples by (seed, e) through
DistributedSampler. Hence a run's batches do not depend on the number of data-loader workers, a
resumed run sees exactly the batches the interrupted one would have, and W processes under
torchrun see, together, the same global batches as one process (each rank a slice of them).

The loader's workers hand over uint8 pixels (`SeededCropTransform(..., uint8=True)`,
`uint8_eval_transform`): a quarter of float32's shared memory. The training process turns them
into the model's input on its device (`DeviceNormalize`) with the very operations of ToTensor
and Normalize, so the batches equal the float path's.

A training split read from its resized copy (stages.datasets.resized, `datasets.<name>.resized_copy`)
keeps the PIL path's draws: the crop box comes from the same generator applied to the original's
size, and cuts the same relative region of the copy (`copy_box`); the caption draw does not look
at the image. Only the pixels differ (the copy's resize and JPEG re-encoding).
"""

from __future__ import annotations

import math

import numpy as np
import open_clip
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from ..datasets.base import ImageList

CROP_STREAM, CAPTION_STREAM = 0, 1
_PIL_FILTER = {InterpolationMode.BILINEAR: Image.BILINEAR, InterpolationMode.BICUBIC: Image.BICUBIC}
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect-ratio range, as open_clip uses it


def sample_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one sample's draw in one epoch: a function of (seed, epoch, index, stream)
    only, so that crops and captions do not depend on the loader's workers or order."""
    return np.random.default_rng([seed, epoch, index, stream])


def crop_params(width: int, height: int, scale, rng: np.random.Generator, ratio=RATIO):
    """torchvision's RandomResizedCrop.get_params with an explicit generator."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # fallback: the whole image cropped to the nearest allowed ratio, centred (as torchvision)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def copy_box(params, source_size, copy_size) -> tuple[float, float, float, float]:
    """The crop box `params` = (top, left, height, width), drawn in the original's pixels
    (`source_size` = (width, height)), as PIL's (left, upper, right, lower) in the pixels of a copy
    of size `copy_size`: the same fractions of the width and height, so the same region."""
    i, j, h, w = params
    sx, sy = copy_size[0] / source_size[0], copy_size[1] / source_size[1]
    return j * sx, i * sy, (j + w) * sx, (i + h) * sy


def input_size(model) -> list[int]:
    """[H, W] of the model's input images (its open_clip preprocess config)."""
    size = open_clip.get_model_preprocess_cfg(model)["size"]
    return list(size) if isinstance(size, (tuple, list)) else [size, size]


class SeededCropTransform:
    """RandomResizedCrop(scale) + the model's normalisation, drawing from a given generator; with
    `uint8`, the cropped pixels as a uint8 [3, H, W] tensor instead (normalised later by
    `DeviceNormalize(self.mean, self.std)`)."""

    def __init__(self, model, scale, uint8: bool = False):
        cfg = open_clip.get_model_preprocess_cfg(model)
        self.size = input_size(model)
        self.scale = tuple(scale)
        self.interpolation = (InterpolationMode.BILINEAR if cfg.get("interpolation") == "bilinear"
                              else InterpolationMode.BICUBIC)
        self.mean, self.std = list(cfg["mean"]), list(cfg["std"])
        self.uint8 = uint8

    def __call__(self, image, rng: np.random.Generator, source_size: tuple[int, int] | None = None) -> torch.Tensor:
        """`source_size`: the (width, height) of the original when `image` is its resized copy
        (stages.datasets.resized): the box is drawn in the original's pixels, from the same
        generator, and the same relative region of the copy is resampled (`copy_box`)."""
        image = image.convert("RGB")
        if source_size is None or tuple(source_size) == image.size:
            i, j, h, w = crop_params(image.width, image.height, self.scale, rng)
            image = TF.resized_crop(image, i, j, h, w, self.size, self.interpolation, antialias=True)
        else:
            box = copy_box(crop_params(*source_size, self.scale, rng), source_size, image.size)
            # PIL resamples the fractional box directly (no integer crop first), with the
            # antialiasing filter of TF.resize on a PIL image
            image = image.resize((self.size[1], self.size[0]), _PIL_FILTER[self.interpolation], box=box)
        if self.uint8:
            return TF.pil_to_tensor(image)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)


def uint8_eval_transform(preprocess) -> tuple[T.Compose, list[float], list[float]]:
    """open_clip's evaluation transform (resize, centre crop, RGB, ToTensor, Normalize) split into
    its PIL part ending in uint8 pixels, and the normalisation's mean and std."""
    steps = list(getattr(preprocess, "transforms", []))
    cut = next((k for k, t in enumerate(steps) if isinstance(t, T.ToTensor)), None)
    if cut is None or len(steps) != cut + 2 or not isinstance(steps[cut + 1], T.Normalize):
        raise ValueError(f"expected an evaluation transform ending in ToTensor, Normalize; got {preprocess}")
    norm = steps[cut + 1]
    return T.Compose(steps[:cut] + [_to_rgb, T.PILToTensor()]), list(norm.mean), list(norm.std)


def _to_rgb(image):
    return image.convert("RGB")


class DeviceNormalize:
    """uint8 [B, 3, H, W] pixels -> the model's float32 input, on the pixels' device: x / 255, then
    (x - mean) / std, the operations (and their order) of ToTensor and Normalize, so the result
    equals the float path's to float32 rounding of those same operations."""

    def __init__(self, mean, std, device):
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype != torch.uint8:
            raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
        return pixels.to(self.mean.device, non_blocking=True).float().div_(255).sub_(self.mean).div_(self.std)


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

    def __init__(self, images: ImageList, transform, seed: int, spurious_rows: torch.Tensor | None,
                 spurious_groups: list[list[int]] | None = None):
        self.images, self.transform, self.seed = images, transform, seed
        self.spurious_rows, self.spurious_groups = spurious_rows, spurious_groups

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        epoch, i = key
        image, y, _, _ = self.images[i]
        rng = sample_rng(self.seed, epoch, i, CROP_STREAM)
        source_size = self.images.source_size(i)
        if source_size is not None:   # a resized copy (stages.datasets.resized): the crop box is the original's
            image = self.transform(image, rng, source_size)
        else:
            image = self.transform(image, rng)
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

    def __init__(self, images: ImageList, max_bytes: int = 1 << 30):
        self.images, self.budget, self.items = images, max_bytes, {}

    def __len__(self) -> int:
        return len(self.images)

    def source_size(self, i: int) -> tuple[int, int] | None:
        """As ImageList.source_size: the original's (width, height) for a resized copy, else None."""
        return self.images.source_size(i)

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
