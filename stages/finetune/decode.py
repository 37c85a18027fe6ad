"""Training images decoded in the training process, on the device (`finetune.decode: device`).

The PIL path (trainset.TrainSet + SeededCropTransform) decodes and crops in the data-loader
workers: ~10-13 CPU cores per H200 at FLYP's 1,600 images/s. Here the workers only read each
file's bytes (`EncodedTrainSet`), and the training process decodes the whole batch at once with
`torchvision.io.decode_jpeg(..., device=device)` (batched nvJPEG on CUDA, libjpeg-turbo on the
CPU) and crops, resizes and normalises it there (`DeviceCropDecoder`), so the CPU cost per image is
a file read.

What stays the same as the PIL path, so that a run's data do not depend on the decode path:
- the crop box of sample i in epoch e: `crop_params(width, height, scale, sample_rng(seed, e, i,
  CROP_STREAM))`, the very generator and box SeededCropTransform uses;
- the spurious caption: `draw_template(sample_rng(seed, e, i, CAPTION_STREAM), ...)`, as TrainSet;
- the model's input size, interpolation (bicubic unless its preprocess config says bilinear),
  mean and std, read as SeededCropTransform reads them; the evaluation transform (augment=False)
  is open_clip's preprocess_val (resize, centre crop) on tensors.
What differs, by a few grey levels at most: the JPEG decoder (nvJPEG vs libjpeg-turbo; on the
CPU torchvision's decoder is libjpeg-turbo too, as PIL's) and the resize arithmetic (torch's
antialiased float kernel vs PIL's fixed-point one; both use PIL's a = -0.5 cubic and the same
support, so they agree to rounding).

Files nvJPEG cannot take (anything but a baseline, extended or progressive JPEG of 1 or 3
components: PNG, CMYK/YCCK JPEG, lossless or arithmetic-coded JPEG) are decoded on the CPU by
`torchvision.io.decode_image` and moved to the device; every image comes out RGB.
"""

from __future__ import annotations

import os

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from ..datasets.base import DataError, ImageList
from .trainset import CAPTION_STREAM, CROP_STREAM, crop_params, draw_template, sample_rng


# ----------------------------------------------------------------------------------------------
# Workers: file bytes


class EncodedTrainSet(torch.utils.data.Dataset):
    """Items (file bytes, y, index, spurious_row, epoch) for keys (epoch, index) from EpochSampler.

    The bytes are a 1-D uint8 tensor, what torchvision.io.read_file returns; but read into numpy
    (np.fromfile): read_file's tensor lives in a storage that the DataLoader's workers cannot
    hand to the main process ("OSError: [Errno 9] Bad file descriptor" in the queue's feeder
    thread, which drops the batch: the loader hangs). DeviceCropDecoder decodes and crops them. `spurious_rows` and `spurious_groups` mean what they mean for trainset.TrainSet,
    and the spurious row is drawn as TrainSet draws it (-1 without `spurious_rows`).
    """

    def __init__(self, images: ImageList, seed: int, spurious_rows: torch.Tensor | None,
                 spurious_groups: list[list[int]] | None = None):
        self.path, self.labels = images.path, images.labels
        self.seed, self.spurious_rows, self.spurious_groups = seed, spurious_rows, spurious_groups

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        epoch, i = key
        path = self.path(i)
        try:
            data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
        except Exception as e:
            raise DataError(f"image {path} (training sample {i}) missing or unreadable: {e}") from e
        y = int(self.labels[i])
        spurious = -1
        if self.spurious_rows is not None:
            k = draw_template(sample_rng(self.seed, epoch, i, CAPTION_STREAM), self.spurious_rows.shape[1],
                              self.spurious_groups)
            spurious = int(self.spurious_rows[y, k])
        return data, y, i, spurious, epoch


def collate_encoded(batch):
    """(list of uint8 byte tensors, y, index, spurious, epoch), the last four int64 tensors.

    The byte tensors are views of one buffer, in shared memory when collated in a worker (as
    default_collate's stack): the batch crosses to the main process as one storage, not one file
    descriptor per image."""
    data, y, index, spurious, epoch = zip(*batch)
    sizes = [len(d) for d in data]
    flat = torch.empty(sum(sizes), dtype=torch.uint8)
    if torch.utils.data.get_worker_info() is not None:
        flat.share_memory_()
    torch.cat(data, out=flat)
    as_long = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return list(flat.split(sizes)), as_long(y), as_long(index), as_long(spurious), as_long(epoch)


# ----------------------------------------------------------------------------------------------
# Training process: decode, crop, resize, normalise


_NVJPEG_SOF = (0xC0, 0xC1, 0xC2)   # baseline, extended sequential, progressive (Huffman)
_OTHER_SOF = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}


def jpeg_frame(data: torch.Tensor) -> tuple[int, int, int] | None:
    """(SOF marker, sample precision in bits, number of components) of a JPEG's frame header, or None when `data` is not a
    JPEG or its header cannot be parsed. Reads a few marker headers, not the image data."""
    buf = data.numpy()
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if buf[pos] != 0xFF:
            return None
        marker = int(buf[pos + 1])
        if marker == 0xFF:                              # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in _NVJPEG_SOF or marker in _OTHER_SOF:
            return (marker, int(buf[pos + 4]), int(buf[pos + 9])) if pos + 10 <= n else None
        if marker in (0xDA, 0xD9):                      # scan or end before any frame header
            return None
        pos += 2 + (int(buf[pos + 2]) << 8 | int(buf[pos + 3]))
    return None


def device_decodable(data: torch.Tensor) -> bool:
    """Whether decode_jpeg(device=...) takes the file: a Huffman-coded baseline, extended or
    progressive 8-bit JPEG of 1 (grey) or 3 (YCbCr) components. CMYK/YCCK JPEGs, 12-bit, lossless
    or arithmetic-coded ones and every other format go through the CPU."""
    frame = jpeg_frame(data)
    return frame is not None and frame[0] in _NVJPEG_SOF and frame[1] == 8 and frame[2] in (1, 3)


def _cpu_decode(data: torch.Tensor, index: int) -> torch.Tensor:
    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
    except Exception as e:
        raise DataError(f"training sample {index}: image not decodable: {e}") from e
    if image.dtype != torch.uint8:                      # 16-bit PNG
        image = TF.convert_image_dtype(image, torch.uint8)
    return image


def decode_batch(data: list[torch.Tensor], device: torch.device, index=None) -> list[torch.Tensor]:
    """RGB uint8 [3, H, W] images on `device`: JPEGs the device decoder takes in one batched
    decode_jpeg call, the rest (and any the batch call rejects) decoded on the CPU and moved."""
    device = torch.device(device)
    index = list(range(len(data))) if index is None else [int(k) for k in index]
    out: list[torch.Tensor | None] = [None] * len(data)
    jpeg = [k for k, d in enumerate(data) if device_decodable(d)]
    if jpeg:
        try:
            decoded = decode_jpeg([data[k] for k in jpeg], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = [None] * len(jpeg)                # one bad file: retry one by one below
            for n, k in enumerate(jpeg):
                try:
                    decoded[n] = decode_jpeg(data[k], mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    pass
        for k, image in zip(jpeg, decoded):
            out[k] = image
    for k, image in enumerate(out):
        if image is None:
            out[k] = _cpu_decode(data[k], index[k]).to(device)
    return out


class DeviceCropDecoder:
    """Decodes a batch of file bytes on `device` and applies each sample's seeded RandomResizedCrop
    (augment=True: the box SeededCropTransform draws for the same (seed, epoch, index)) or the
    evaluation transform (augment=False: open_clip's preprocess_val), then the model's resize and
    normalisation. Returns a float32 [B, 3, H, W] tensor on `device`."""

    def __init__(self, model, scale, seed: int, device, augment: bool = True):
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg["size"]
        self.size = list(size) if isinstance(size, (tuple, list)) else [size, size]
        self.scale = tuple(scale) if scale is not None else None
        self.seed, self.device, self.augment = seed, torch.device(device), augment
        # as SeededCropTransform and open_clip's image_transform
        self.mode = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
        self.resize_mode = cfg.get("resize_mode") or "shortest"
        if self.resize_mode not in ("shortest", "longest", "squash"):
            raise ValueError(f"unknown resize_mode {self.resize_mode!r} in the model's preprocess config")
        mean = torch.as_tensor(cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN, dtype=torch.float32)
        std = torch.as_tensor(cfg.get("std") or open_clip.OPENAI_DATASET_STD, dtype=torch.float32)
        mean, std = mean.expand(3), std.expand(3)
        # x / 255 normalised = (x - 255 mean) / (255 std), on 0..255 floats
        self.shift = (mean * 255).view(1, 3, 1, 1).to(self.device)
        self.div = (std * 255).view(1, 3, 1, 1).to(self.device)
        # On the CPU, torch's uint8 antialiased kernel: ~7x faster than float there and rounded as
        # PIL's (same pixels to +-1 level); CUDA has none, so there the resize runs in float.
        self.uint8_resize = self.device.type == "cpu"
        if augment and self.scale is None:
            raise ValueError("augment=True needs the crop scale")

    def box(self, width: int, height: int, index: int, epoch: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of sample `index`'s crop in `epoch`: the PIL path's box."""
        return crop_params(width, height, self.scale, sample_rng(self.seed, epoch, index, CROP_STREAM))

    def _resize(self, image: torch.Tensor, size, mode: str | None = None) -> torch.Tensor:
        """Antialiased resize of a uint8 [3, h, w] image to float 0..255 [3, *size]: in uint8 when
        `uint8_resize`, else in float, clamped to 0..255 as PIL's uint8 output is."""
        x = image.unsqueeze(0)
        if list(x.shape[-2:]) == list(size):
            return x.squeeze(0).float()
        mode = mode or self.mode
        if self.uint8_resize:
            return F.interpolate(x.contiguous(), size=list(size), mode=mode, align_corners=False,
                                 antialias=True).squeeze(0).float()
        x = F.interpolate(x.float(), size=list(size), mode=mode, align_corners=False, antialias=True)
        return x.squeeze(0).clamp_(0, 255)

    def _eval(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        th, tw = self.size
        if self.resize_mode == "squash":
            return self._resize(image, self.size)
        if self.resize_mode == "shortest" and th == tw:
            # torchvision Resize(int): shorter side to th, longer side truncated
            short, long = (h, w) if h <= w else (w, h)
            new_long = int(th * long / short)
            size = (th, new_long) if h <= w else (new_long, th)
            mode = None
        else:
            # open_clip's ResizeKeepRatio (whose interpolation stays its default, bicubic)
            ratio = max(h / th, w / tw) if self.resize_mode == "longest" else min(h / th, w / tw)
            size = (round(h / ratio), round(w / ratio))
            mode = "bicubic" if self.resize_mode == "shortest" else None
        # centre crop, padding with 0 (open_clip's fill_color) where the image is smaller
        return TF.center_crop(self._resize(image, size, mode), self.size)

    def __call__(self, data: list[torch.Tensor], index: torch.Tensor, epoch: torch.Tensor) -> torch.Tensor:
        index, epoch = torch.as_tensor(index).tolist(), torch.as_tensor(epoch).tolist()
        if len(index) != len(data) or len(epoch) != len(data):
            raise ValueError(f"{len(data)} images but {len(index)} indices and {len(epoch)} epochs")
        images = decode_batch(data, self.device, index)
        out = []
        for image, i, e in zip(images, index, epoch):
            if self.augment:
                top, left, h, w = self.box(image.shape[-1], image.shape[-2], i, e)
                out.append(self._resize(image[:, top:top + h, left:left + w], self.size))
            else:
                out.append(self._eval(image))
        if not out:
            return torch.empty(0, 3, *self.size, device=self.device)
        return torch.stack(out).sub_(self.shift).div_(self.div)


def mean_file_bytes(trainset: EncodedTrainSet, k: int = 64) -> int:
    """Mean size of `k` of the set's files, evenly spaced over it: the bytes one sample of the
    encoded path puts in shared memory, estimated without reading the whole set (a few stats)."""
    n = len(trainset)
    if n == 0:
        return 0
    picks = np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))
    sizes = []
    for i in picks:
        try:
            sizes.append(os.path.getsize(trainset.path(int(i))))
        except OSError:
            pass            # a missing file is reported, naming it, when its sample is read
    return int(np.mean(sizes)) if sizes else 0
