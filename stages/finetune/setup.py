"""A run's set-up, which every other piece of the run reads.

- the files of a run's folder (`CHECKPOINT`, `RESUME`, `LOG`) and the log's columns (`LOG_COLUMNS`);
- `Run`: one run's models, texts and records, built once by `prepare` (teacher, text embeddings,
  student and its head); `cpu_copy` copies weights to the CPU;
- the data: `open_split` (one split through its reader), `split_loader` (un-augmented images of a
  split: probe features, validation) and `train_loader` (the per-rank training batches).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import datasets
from ..method.teacher_text import read_embeddings
from ..common.io import versions
from ..method.models import Clip, autocast, autocast_dtype, can_trim_text, load_clip
from ..method.zeroshot import LinearHead
from . import distributed
from ..method.registry import METHODS, Method
from .runs import FinetuneConfigError
from .decode import DeviceCropDecoder, EncodedTrainSet, collate_encoded
from .trainset import DecodedCache, EpochSampler, FixedTransform, SeededCropTransform, TrainSet
from .captions import Captions, inputs_fingerprint, zeroshot_class_weights
from .step import set_trainable

CHECKPOINT, RESUME, LOG = "checkpoint.pt", "resume.pt", "train_log.csv"
LOG_COLUMNS = ("phase", "step", "epoch", "loss", "loss_ft", "regularizer", "lambda", "lr", "logit_scale",
               "images_per_s", "l2", "val_accuracy", "val_worst_group")


@dataclass
class Run:
    """One run's models, texts and records, built once by `prepare` and passed to every step."""

    cfg: dict
    seed: int
    dataset_cfg: dict
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
    log: list = field(default_factory=list)
    probe: dict | None = None

    @property
    def method(self) -> Method:
        return METHODS[self.cfg["method"]]

    @property
    def resume_path(self) -> Path:
        return self.out_dir / RESUME

    def autocast(self):
        return autocast(self.ctx.device, self.autocast_dtype)

    def state(self, epoch: int, step: int, weights: tuple[dict, dict | None], **extra) -> dict:
        """A checkpoint: the given weights with everything that says where they come from."""
        model, head = weights
        # classnames: the label space of the head (evaluate uses it only on targets that share it)
        return {"model": model, "head": head, "method": self.cfg["method"], "name": self.cfg["name"],
                "classnames": self.dataset_cfg["classnames"],
                "epoch": epoch, "step": step, "seed": self.seed, "config": self.cfg,
                "teacher": self.clip.identity, "teacher_logit_scale": self.tau0, "inputs": self.inputs,
                "probe": self.probe, "versions": versions(), "log": self.log, **extra}

    def weights(self) -> tuple[dict, dict | None]:
        """The student's current weights, copied to the CPU (clone: CPU tensors would be shared)."""
        return cpu_copy(self.student_clip), cpu_copy(self.head)


def cpu_copy(module: torch.nn.Module | None) -> dict | None:
    return None if module is None else {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def prepare(dataset_cfg: dict, cfg: dict, seed: int, embeddings: Path, out_dir: Path, ctx: distributed.Context,
            train_set: datasets.ClassificationSet) -> Run:
    """Load the teacher and its text embeddings; make the student (and its head) from the teacher."""
    method = METHODS[cfg["method"]]
    threads = cfg.get("threads", 0)
    if threads:   # the job's threads, shared by the processes of this machine
        torch.set_num_threads(max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if ctx.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)

    classnames, model_cfg = dataset_cfg["classnames"], dataset_cfg["model"]
    clip = load_clip(model_cfg["name"], model_cfg.get("pretrained"), device=ctx.device)
    teacher = clip.model.eval().requires_grad_(False)
    tau0 = float(teacher.logit_scale.exp())
    emb = read_embeddings(embeddings, expected_fingerprint=clip.identity["fingerprint"], classnames=classnames)
    captions = Captions.build(emb, clip.tokenizer, classnames, cfg, embeddings, method.regularizer is not None)
    captions.trim = can_trim_text(teacher)

    student_clip = copy.deepcopy(teacher).train()
    head = None
    if method.has_head:
        zs = zeroshot_class_weights(emb, dataset_cfg["evaluate"]["templates"], len(classnames), embeddings)
        head = LinearHead(zs, tau0).to(ctx.device)
    set_trainable(student_clip, method, cfg.get("kl_scale", "student"))
    out_dir.mkdir(parents=True, exist_ok=True)
    return Run(cfg, seed, dataset_cfg, out_dir, ctx, train_set, clip, teacher, tau0, captions,
               emb.embeddings.to(ctx.device), student_clip, head, inputs_fingerprint(emb, dataset_cfg),
               autocast_dtype(cfg.get("precision", "auto"), ctx.device))


def open_split(dataset_cfg: dict, split: str, transform=None) -> datasets.ClassificationSet:
    """One split of the training set through its reader, with the class names it is trained on."""
    data = dataset_cfg["data"]
    return datasets.with_overrides(datasets.open(data["reader"], data["root"], split, transform), data["dataset"],
                                   dataset_cfg["classnames"], dataset_cfg["evaluate"]["templates"])


def split_loader(run: Run, split: str, batch_size: int, purpose: str):
    """Un-augmented images of one split (probe features, validation), opened, and their loader;
    `purpose` names the user."""
    images = open_split(run.dataset_cfg, split, run.clip.preprocess_val)
    if len(images.dataset) == 0:
        raise FinetuneConfigError(f"{run.dataset_cfg['data']['root']} has no {split} images, which {purpose} needs")
    loader = torch.utils.data.DataLoader(images.dataset, batch_size=batch_size, pin_memory=run.ctx.device.type == "cuda",
                                         num_workers=run.cfg.get("num_workers", 0))
    return images, loader


def train_loader(run: Run) -> tuple[torch.utils.data.DataLoader, EpochSampler, Callable]:
    """Per-rank batches of B / W samples (the W ranks together hold the global batch), and the
    function that turns a loader batch into (images on the device, y, index, spurious).

    `decode: cpu`: workers decode and crop (PIL); `decode: device`: workers only read the files'
    bytes and the training process decodes and crops the batch on its device (module decode)."""
    cfg, ctx = run.cfg, run.ctx
    augment, workers = cfg.get("augment", True), cfg.get("num_workers", 0)
    rows, groups = run.captions.spurious_rows, run.captions.spurious_groups
    if cfg.get("decode", "cpu") == "device":
        trainset = EncodedTrainSet(run.train_set.dataset, run.seed, rows, groups)
        decoder = DeviceCropDecoder(run.teacher, cfg["crop_scale"], run.seed, ctx.device, augment)
        collate = collate_encoded

        def to_batch(raw):
            data, y, index, spurious, epoch = raw
            return decoder(data, index, epoch), y, index, spurious
    else:
        transform = SeededCropTransform(run.teacher, cfg["crop_scale"]) if augment \
            else FixedTransform(run.clip.preprocess_val)
        images = DecodedCache(run.train_set.dataset) if workers == 0 else run.train_set.dataset
        trainset = TrainSet(images, transform, run.seed, rows, groups)
        collate = None

        def to_batch(raw):
            return raw
    sampler = EpochSampler(trainset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=run.seed)
    loader = torch.utils.data.DataLoader(
        trainset, batch_size=cfg["batch_size"] // ctx.world_size, sampler=sampler, drop_last=True,
        num_workers=workers, pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None, collate_fn=collate)
    return loader, sampler, to_batch
