"""A run's set-up, which every other piece of the run reads.

- the files of a run's folder (`CHECKPOINT`, `RESUME`, `LOG`) and the log's columns (`LOG_COLUMNS`);
- `Run`: one run's models, texts and records, built once by `prepare` (teacher, text embeddings,
  student and its head); `cpu_copy` copies weights to the CPU;
- the data: `open_split` (one split through its reader), `split_loader` (un-augmented images of a
  split: validation), `make_loader` (a DataLoader whose shared memory is checked against
  /dev/shm first, module `shm`) and `train_loader` (the per-rank training batches, uint8 pixels
  from the workers, normalised on the device; from the split's resized copy when the data set has
  one, `training_images`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import datasets
from ..common.io import versions
from ..datasets.resized import ResizedCopyError, ResizedImages
from ..method.models import Clip, autocast, autocast_dtype, can_trim_text, load_clip
from ..method.registry import Method
from ..method.teacher_text import read_embeddings
from ..method.zeroshot import LinearHead
from . import distributed
from .captions import Captions, inputs_fingerprint, zeroshot_class_weights
from .decode import DeviceCropDecoder, EncodedTrainSet, collate_encoded, mean_file_bytes
from .runs import FinetuneConfigError, RunConfig
from .shm import LABEL_BYTES, PREFETCH, check_loader_memory
from .step import Superclasses, set_trainable
from .trainset import (
    DecodedCache,
    DeviceNormalize,
    EpochSampler,
    FixedTransform,
    SeededCropTransform,
    TrainSet,
    input_size,
    uint8_eval_transform,
)

CHECKPOINT, RESUME, LOG = "checkpoint.pt", "resume.pt", "train_log.csv"
LOG_COLUMNS = ("phase", "step", "epoch", "loss", "loss_ft", "regularizer", "lambda", "lr", "logit_scale",
               "images_per_s", "l2", "holdout_accuracy", "val_worst_group", "superclass_share")


@dataclass
class Run:
    """One run's models, texts and records, built once by `prepare` and passed to every step."""

    cfg: RunConfig
    seed: int
    dataset_cfg: dict                   # the experiment's training job (stages.config.train_job)
    out_dir: Path
    ctx: distributed.Context
    train_set: datasets.ClassificationSet   # the training split, opened (its layout checked)
    clip: Clip                          # the loaded teacher: tokenizer, transforms, identity
    teacher: torch.nn.Module            # f0, g0: frozen
    tau0: float                         # the teacher's logit scale
    captions: Captions
    teacher_text: torch.Tensor          # g0 of every row of the embeddings table, on the device
    student_clip: torch.nn.Module       # f, g: fine-tuned
    head: LinearHead | None
    inputs: str                         # inputs_fingerprint
    autocast_dtype: torch.dtype | None
    superclasses: Superclasses | None = None   # the training set's, when it declares them
    log: list = field(default_factory=list)
    probe: dict | None = None
    keep_resume: bool = False           # resume.pt outlives the checkpoint (see checkpoint.finish)

    @property
    def method(self) -> Method:
        """The registry entry of the run's base method (a variant's too)."""
        return self.cfg.base

    @property
    def resume_path(self) -> Path:
        """The resume file of this run: out_dir/resume.pt."""
        return self.out_dir / RESUME

    def autocast(self):
        """The autocast context of the run's precision on its device."""
        return autocast(self.ctx.device, self.autocast_dtype)

    def state(self, epoch: int, step: int, weights: tuple[dict, dict | None], **extra) -> dict:
        """A checkpoint: the given weights with everything that says where they come from."""
        model, head = weights
        # classnames: the label space of the head (evaluate uses it only on targets that share it)
        shares = [row["superclass_share"] for row in self.log if row.get("superclass_share") is not None]
        return {"model": model, "head": head, "method": self.cfg.method, "name": self.cfg.name,
                "classnames": self.dataset_cfg["classnames"],
                # the KL target's mean mass on an image's own superclass over the logged steps
                "kl_target_superclass_share": sum(shares) / len(shares) if shares else None,
                "epoch": epoch, "step": step, "seed": self.seed, "config": self.cfg.as_dict(),
                "teacher": self.clip.identity, "teacher_logit_scale": self.tau0, "inputs": self.inputs,
                "probe": self.probe, "versions": versions(), "log": self.log, **extra}

    def weights(self) -> tuple[dict, dict | None]:
        """The student's current weights, copied to the CPU (clone: CPU tensors would be shared)."""
        return cpu_copy(self.student_clip), cpu_copy(self.head)


def cpu_copy(module: torch.nn.Module | None) -> dict | None:
    """A module's state dict copied to the CPU (None for no module)."""
    return None if module is None else {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def prepare(dataset_cfg: dict, cfg: RunConfig, seed: int, embeddings: Path, out_dir: Path, ctx: distributed.Context,
            train_set: datasets.ClassificationSet) -> Run:
    """Load the teacher and its text embeddings; make the student (and its head) from the teacher."""
    method = cfg.base
    if cfg.threads:   # the job's threads, shared by the processes of this machine
        torch.set_num_threads(max(1, cfg.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)

    classnames, model_cfg = dataset_cfg["classnames"], dataset_cfg["model"]
    clip = load_clip(model_cfg["name"], model_cfg.get("pretrained"), device=ctx.device)
    teacher = clip.model.eval().requires_grad_(False)
    tau0 = float(teacher.logit_scale.exp())
    emb = read_embeddings(embeddings, expected_fingerprint=clip.identity["fingerprint"], classnames=classnames)
    captions = Captions.build(emb, clip.tokenizer, classnames, cfg, embeddings, method.uses_spurious)
    captions.trim = can_trim_text(teacher)

    student_clip = copy.deepcopy(teacher).train()
    if cfg.grad_checkpointing:   # open_clip's own switch: every block of both towers recomputed
        student_clip.set_grad_checkpointing(True)
    head = None
    if method.has_head:
        zs = zeroshot_class_weights(emb, dataset_cfg["evaluate"]["templates"], len(classnames), embeddings)
        head = LinearHead(zs, tau0).to(ctx.device)
    set_trainable(student_clip, method, cfg.kl_scale)
    out_dir.mkdir(parents=True, exist_ok=True)
    return Run(cfg, seed, dataset_cfg, out_dir, ctx, train_set, clip, teacher, tau0, captions,
               emb.embeddings.to(ctx.device), student_clip, head, inputs_fingerprint(emb, dataset_cfg),
               autocast_dtype(cfg.precision, ctx.device), superclasses_of(dataset_cfg, cfg, ctx.device))


def superclasses_of(dataset_cfg: dict, cfg: RunConfig, device) -> Superclasses | None:
    """The training set's superclass of each class as indices on `device` (in order of first
    appearance), and whether the run masks by them; None where the data set declares none."""
    names = dataset_cfg.get("superclasses")
    if names is None:
        if cfg.star_mask == "superclass":
            raise FinetuneConfigError(f"finetune.star_mask: superclass needs datasets."
                                      f"{dataset_cfg['data']['dataset']}.superclasses")
        return None
    index = {n: i for i, n in enumerate(dict.fromkeys(names))}
    return Superclasses(torch.tensor([index[n] for n in names], device=device), cfg.star_mask == "superclass")


def open_split(dataset_cfg: dict, split: str, transform=None) -> datasets.ClassificationSet:
    """One split of the training set through its reader, with the class names it is trained on."""
    data = dataset_cfg["data"]
    return datasets.with_overrides(datasets.open(data["reader"], data["root"], split, transform), data["dataset"],
                                   dataset_cfg["classnames"], dataset_cfg["evaluate"]["templates"])


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, what: str, sample_bytes: int,
                **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader with prefetch PREFETCH, refused with one line (shm.SharedMemoryError) when its
    batches in flight would not fit in /dev/shm: before its first batch, not as a bus error."""
    check_loader_memory(what, workers, PREFETCH, batch_size, sample_bytes)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       pin_memory=device.type == "cuda",
                                       prefetch_factor=PREFETCH if workers > 0 else None, **kwargs)


def split_loader(run: Run, split: str, batch_size: int, purpose: str):
    """Un-augmented images of one split (validation), opened, and their loader of float32 images
    (what the evaluate stage's scoring reads); `purpose` names the user."""
    images = open_split(run.dataset_cfg, split, run.clip.preprocess_val)
    if len(images.dataset) == 0:
        raise FinetuneConfigError(f"{run.dataset_cfg['data']['root']} has no {split} images, which {purpose} needs")
    h, w = input_size(run.teacher)
    loader = make_loader(images.dataset, batch_size, run.cfg.num_workers, run.ctx.device, purpose,
                         4 * 3 * h * w + LABEL_BYTES)
    return images, loader


def uint8_split(dataset_cfg: dict, split: str, clip, device: torch.device, purpose: str):
    """Un-augmented uint8 images of one split, opened, with the DeviceNormalize that turns a batch
    of them into the model's input, and the bytes of one sample (for make_loader)."""
    pil, mean, std = uint8_eval_transform(clip.preprocess_val)
    images = open_split(dataset_cfg, split, pil)
    if len(images.dataset) == 0:
        raise FinetuneConfigError(f"{dataset_cfg['data']['root']} has no {split} images, which {purpose} needs")
    h, w = input_size(clip.model)
    return images, DeviceNormalize(mean, std, device), 3 * h * w + LABEL_BYTES


def training_images(run: Run) -> datasets.ImageList:
    """The training split's items: from its resized copy when the data set has one
    (`datasets.<name>.resized_copy`; labels and order still the original split's), else from
    the originals. Only training reads the copy: validation, the probe and evaluation the originals."""
    copy_root = run.dataset_cfg["data"].get("resized_copy")
    if not copy_root:
        return run.train_set.dataset
    try:
        return ResizedImages(run.train_set, copy_root)
    except ResizedCopyError as e:
        raise FinetuneConfigError(str(e)) from None


def train_loader(run: Run) -> tuple[torch.utils.data.DataLoader, EpochSampler, Callable]:
    """Per-rank batches of B / W samples (the W ranks together hold the global batch), and the
    function that turns a loader batch into (images on the device, y, index, spurious).

    `decode: cpu`: workers decode and crop (PIL) to uint8 pixels, which `to_batch` moves to the
    device and normalises there (a quarter of float32's shared memory and host-to-device bytes);
    `decode: device`: workers only read the files' bytes and the training process decodes and
    crops the batch on its device (module decode). Either way the loader's shared memory is
    checked against /dev/shm before the first batch (module shm)."""
    cfg, ctx = run.cfg, run.ctx
    augment, workers = cfg.augment, cfg.num_workers
    rows, groups = run.captions.spurious_rows, run.captions.spurious_groups
    per_rank = cfg.batch_size // ctx.world_size
    if cfg.decode == "device":
        if run.dataset_cfg["data"].get("resized_copy"):
            raise FinetuneConfigError(f"datasets.{run.dataset_cfg['data']['dataset']}.resized_copy is read by "
                                      "`finetune.decode: cpu` only; set one of them off")
        trainset = EncodedTrainSet(run.train_set.dataset, run.seed, rows, groups)
        decoder = DeviceCropDecoder(run.teacher, cfg.crop_scale, run.seed, ctx.device, augment)
        collate = collate_encoded
        sample_bytes = mean_file_bytes(trainset) + LABEL_BYTES

        def to_batch(raw):
            data, y, index, spurious, epoch = raw
            return decoder(data, index, epoch), y, index, spurious
    else:
        if augment:
            transform = SeededCropTransform(run.teacher, cfg.crop_scale, uint8=True)
            mean, std = transform.mean, transform.std
        else:
            pil, mean, std = uint8_eval_transform(run.clip.preprocess_val)
            transform = FixedTransform(pil)
        normalize = DeviceNormalize(mean, std, ctx.device)
        images = training_images(run)
        images = DecodedCache(images) if workers == 0 else images
        trainset = TrainSet(images, transform, run.seed, rows, groups)
        collate = None
        h, w = input_size(run.teacher)
        sample_bytes = 3 * h * w + LABEL_BYTES

        def to_batch(raw):
            images, y, index, spurious = raw
            return normalize(images), y, index, spurious
    sampler = EpochSampler(trainset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=run.seed)
    loader = make_loader(trainset, per_rank, workers, ctx.device, "finetune (the training loader)", sample_bytes,
                         sampler=sampler, drop_last=True, collate_fn=collate, persistent_workers=workers > 0)
    return loader, sampler, to_batch
