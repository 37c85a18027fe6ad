"""The fine-tuning run: FLYP or cross-entropy, optionally with StarFT's regulariser (DESIGN.md 1).

Per step, for a batch of images x_i with labels y_i, class captions t_i and spurious captions s_i:

    loss = L_ft + lambda_e * L_star
    L_ft   = contrastive(f(x), g(t), tau)              (flyp)  or  CE(head(f(x)), y)   (ce)
    L_star = KL(softmax tau0 <f0(x_i), g0(s_j)> || softmax tau0 <f(x_i), g(s_j)>)  over other-class j

What makes it cheaper than the released code, with the same numbers:
- g0(s_j), the frozen teacher's text features, come from the embed stage's table (no teacher text
  forward during training);
- token batches are cut after their last end-of-text token (captions are ~15 of CLIP's 77 tokens,
  and the causal text transformer's pooled output does not depend on the padding);
- the student's text encoder runs once per *distinct* caption of the batch (captions repeat: the
  class captions t_i take C values, the spurious ones at most C x pool size) and the features are
  scattered back to the samples;
- f0(x_i) is one no-grad forward of the frozen teacher on the same augmented batch (bf16 on CUDA);
  with `augment: false` the images never change, so f0(x_i) is computed once per image and cached.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F

from .. import datasets
from ..datasets.datacheck import group_counts
from ..method.teacher_text import Embeddings, read_embeddings
from ..common.io import atomic_path, versions
from ..method.losses import clip_contrastive_loss, diminishing_lambda, kl_regularizer, star_regularizer, widen
from ..method.models import Clip, autocast, autocast_dtype, can_trim_text, encode_text, load_clip, trim_tokens
from ..common.progress import progress as progress_bar
from ..method.schedule import warmup_cosine_lr
from ..method.zeroshot import LinearHead, encode_images, ensemble_prompts
from . import distributed, probe
from ..method.registry import METHODS, Method
from .runs import HPARAMS, FinetuneConfigError, check_schedule, validate_run_config
from .decode import DeviceCropDecoder, EncodedTrainSet, collate_encoded
from .trainset import DecodedCache, EpochSampler, FixedTransform, SeededCropTransform, TrainSet

CHECKPOINT, RESUME, LOG = "checkpoint.pt", "resume.pt", "train_log.csv"
LOG_COLUMNS = ("phase", "step", "epoch", "loss", "loss_ft", "regularizer", "lambda", "lr", "logit_scale",
               "images_per_s", "l2", "val_accuracy", "val_worst_group")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------
# Captions, teacher and student


@dataclass
class Captions:
    """Tokenised texts of the embeddings table and the rows each sample's captions come from."""

    tokens: torch.Tensor                 # [N_rows, context] for every row of the table
    caption_row: torch.Tensor            # [C]: row of class c's FLYP caption
    spurious_rows: torch.Tensor | None   # [C, K]: row of spurious template k filled with class c
    trim: bool = False                   # cut token batches after their last end-of-text token
    spurious_groups: list[list[int]] | None = None   # templates (columns) of each type; None: one group

    @classmethod
    def build(cls, emb: Embeddings, tokenizer, classnames: list[str], cfg: dict, path, need_spurious: bool):
        table = emb.table
        caption = table[(table["kind"] == "caption") & (table["template"] == cfg["caption_template"])]
        caption_row = _rows_by_class(caption, len(classnames), path, f"caption template {cfg['caption_template']!r}")
        spurious_rows = groups = None
        if need_spurious:
            types = cfg.get("spurious_types")
            pool = emb.rows("spurious", types)
            if pool.empty:
                raise FinetuneConfigError(
                    f"{path} holds no spurious captions of types {types or 'any'} (finetune.spurious_types; "
                    f"the table has {sorted(set(emb.rows('spurious')['type']))})")
            # One entry per distinct template string, even when two pools share it.
            templates = list(dict.fromkeys(pool["template"]))
            by_template = {t: _rows_by_class(g.drop_duplicates("class_index"), len(classnames), path, f"template {t!r}")
                           for t, g in pool.groupby("template", sort=False)}
            spurious_rows = torch.stack([by_template[t] for t in templates], dim=1)
            if cfg.get("spurious_sampling", "type_then_template") == "type_then_template":
                column = {t: k for k, t in enumerate(templates)}
                groups = [sorted({column[t] for t in g["template"]}) for _, g in pool.groupby("type", sort=True)]
        return cls(tokenizer(table["text"].tolist()), caption_row, spurious_rows, spurious_groups=groups)


def _rows_by_class(rows: pd.DataFrame, n_classes: int, path, what: str) -> torch.Tensor:
    found = dict(zip(rows["class_index"], rows.index))
    missing = [c for c in range(n_classes) if c not in found]
    if missing:
        raise FinetuneConfigError(f"{path} has no embedding of {what} for class(es) {missing}: re-run the embed stage")
    return torch.tensor([found[c] for c in range(n_classes)])


def zeroshot_class_weights(emb: Embeddings, templates: list[str], n_classes: int, path) -> torch.Tensor:
    """The teacher's zero-shot head [C, D] from the table (as zeroshot.zeroshot_weights encodes it)."""
    rows = emb.rows("class_prompt")
    feats = [emb.embeddings[_rows_by_class(rows[rows["template"] == t], n_classes, path,
                                           f"class prompt {t!r} (evaluate.templates)")] for t in templates]
    return ensemble_prompts(torch.stack(feats, dim=1))


def inputs_fingerprint(emb: Embeddings, dataset_cfg: dict) -> str:
    """What a run reads besides its hyper-parameters: the teacher, every text of the embeddings
    table (spurious pools, FLYP captions, class prompts), the class names and the data folder.
    A resume.pt written from other inputs is not resumed."""
    texts = emb.table[["kind", "type", "template", "text"]].to_dict("list")
    payload = {"teacher": emb.meta["fingerprint"], "texts": texts, "classnames": dataset_cfg["classnames"],
               "class_templates": dataset_cfg["evaluate"]["templates"], "data": dataset_cfg["data"]["root"]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class Student(torch.nn.Module):
    """The model being fine-tuned; one forward gives everything any loss needs (one DDP call)."""

    def __init__(self, clip: torch.nn.Module, head: LinearHead | None):
        super().__init__()
        self.clip, self.head = clip, head

    def forward(self, images, tokens=None):
        image = self.clip.encode_image(images)
        text = encode_text(self.clip, tokens) if tokens is not None else None
        logits = self.head(image) if self.head is not None else None
        return image, text, logits, self.clip.logit_scale.exp()


class TeacherImages:
    """f0(x): the frozen teacher's normalised image features, optionally cached per image."""

    def __init__(self, model: torch.nn.Module, n_images: int, cache: bool):
        self.model = model
        self.cache = cache
        self.features: torch.Tensor | None = None
        self.filled = torch.zeros(n_images, dtype=torch.bool)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if not self.cache:
            return F.normalize(widen(self.model.encode_image(images)), dim=-1)
        missing = ~self.filled[index]                       # on CPU: no device sync
        if missing.any():
            feats = F.normalize(widen(self.model.encode_image(images[missing.to(images.device)])), dim=-1)
            if self.features is None:
                self.features = torch.zeros(len(self.filled), feats.shape[1], device=feats.device)
            self.features[index[missing].to(feats.device)] = feats
            self.filled[index[missing]] = True
        return self.features[index.to(self.features.device)]


def set_trainable(clip: torch.nn.Module, method: Method, kl_scale: str = "student") -> None:
    """Freeze what the method's loss does not reach (DDP needs every trainable parameter used)."""
    uses_text = method.objective == "flyp" or method.regularizer is not None
    uses_scale = method.objective == "flyp" or (method.regularizer == "kl" and kl_scale == "student")
    for name, p in clip.named_parameters():
        if name == "logit_scale":
            p.requires_grad_(uses_scale)
        elif not name.startswith("visual."):
            p.requires_grad_(uses_text)
        else:
            p.requires_grad_(True)


# ----------------------------------------------------------------------------------------------
# One step


@dataclass
class Batch:
    images: torch.Tensor      # [b, 3, H, W] on the device
    y: torch.Tensor           # [b] on the device
    index: torch.Tensor       # [b] dataset indices, on CPU (teacher-image cache)
    spurious: torch.Tensor    # [b] table rows of the spurious captions (-1: none), on the device
    tokens: torch.Tensor | None    # [u, context] distinct captions of the batch, on the device
    inverse: torch.Tensor | None   # [n_captions * b] -> row of `tokens`


def prepare_batch(raw, captions: Captions, method: Method, device) -> Batch:
    images, y, index, spurious = raw
    rows = []
    if method.objective == "flyp":
        rows.append(captions.caption_row[y])
    if method.regularizer is not None:
        rows.append(spurious)
    tokens = inverse = None
    if rows:
        # On CPU, before the copy: the student's text encoder sees each distinct caption once.
        unique, inverse = torch.unique(torch.cat(rows), return_inverse=True)
        tokens = captions.tokens[unique]
        tokens = (trim_tokens(tokens) if captions.trim else tokens).to(device, non_blocking=True)
        inverse = inverse.to(device, non_blocking=True)
    return Batch(images.to(device, non_blocking=True), y.to(device, non_blocking=True), index,
                 spurious.to(device, non_blocking=True), tokens, inverse)


def compute_loss(model, teacher_images: TeacherImages, teacher_text: torch.Tensor, tau0: float,
                 method: Method, batch: Batch, lam: float, ctx: distributed.Context, autocast,
                 kl_scale: str = "student"):
    """(loss, L_ft, L_reg, student logit scale) of one batch; under torchrun, of the global batch.

    The losses are computed in float32 at least (bf16 features under autocast; float64 kept).
    `kl_scale` says which scale the student's logits use in the unmasked KL (finetune.kl_scale).
    """
    with autocast():
        image, text, logits, scale = model(batch.images, batch.tokens)
        teacher_image = teacher_images(batch.images, batch.index) if method.regularizer else None
    b = len(batch.y)
    image = F.normalize(widen(image), dim=-1)
    if text is not None:
        text = F.normalize(widen(text), dim=-1)[batch.inverse]       # one row per (caption, sample)
    gather = lambda x: distributed.gather(ctx, x)                      # noqa: E731
    all_image, all_y = gather(image), gather(batch.y)

    if method.objective == "flyp":
        loss_ft = clip_contrastive_loss(all_image, gather(text[:b]), scale)
    else:
        loss_ft = F.cross_entropy(widen(logits), batch.y)

    reg = torch.zeros((), device=image.device)
    if method.regularizer is not None:
        spurious = gather(batch.spurious)
        kw = dict(student_image=all_image, student_text=gather(text[-b:]),
                  teacher_image=gather(teacher_image), teacher_text=teacher_text[spurious])
        if method.regularizer == "star":
            reg = star_regularizer(**kw, labels=all_y, logit_scale=tau0)
        else:
            reg = kl_regularizer(**kw, logit_scale=tau0, student_logit_scale=scale if kl_scale == "student" else None)
    return loss_ft + lam * reg, loss_ft, reg, scale


class Meter:
    """Sums of the losses kept on the device, read (one sync) once per logging interval."""

    def __init__(self, ctx: distributed.Context):
        self.ctx = ctx
        self.sums = torch.zeros(3, device=ctx.device)
        self.first_bad = torch.full((), -1, device=ctx.device, dtype=torch.long)
        self.n, self.tic = 0, time.perf_counter()

    def add(self, step: int, loss, loss_ft, reg) -> None:
        loss = loss.detach()
        self.sums += torch.stack([loss, loss_ft.detach(), reg.detach()]).float()
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss),
                                     torch.full_like(self.first_bad, step), self.first_bad)
        self.n += 1

    def flush(self):
        """(steps, seconds, mean losses over steps and ranks, first non-finite step or None)."""
        means = (distributed.mean(self.ctx, self.sums) / self.n).tolist()
        bad = int(self.first_bad)
        any_bad = distributed.any_rank(self.ctx, bad >= 0)
        out = (self.n, time.perf_counter() - self.tic, means, (bad if bad >= 0 else "?") if any_bad else None)
        self.sums.zero_()
        self.n, self.tic = 0, time.perf_counter()
        return out


# ----------------------------------------------------------------------------------------------
# The run's pieces


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


# ----------------------------------------------------------------------------------------------
# Linear probe and checkpoint selection


def fit_linear_probe(run: Run) -> None:
    """lp, and LP-FT's first stage: the head becomes the converged probe of module `probe`.

    Every rank fits the same probe on all images: cheap next to fine-tuning, and no gather.
    """
    device = run.ctx.device
    feats = []
    for split in (run.cfg.get("train_split", "train"), run.cfg.get("val_split", "val")):
        _, loader = split_loader(run, split, run.cfg["batch_size"], "the linear probe (lp, lpft)")
        f, y, _ = encode_images(run.teacher, loader, device,
                                desc=f"linear-probe features ({split})", autocast_dtype=run.autocast_dtype)
        feats += [f.to(device), y.to(device)]
    linear = run.head.linear
    best, fits = probe.fit_probe(*feats, linear.weight, linear.bias, run.cfg["lp_l2_grid"])
    with torch.no_grad():
        linear.weight.copy_(best.weight)
        linear.bias.copy_(best.bias)
    run.probe = {"l2": best.l2, "fits": [f.record() for f in fits]}
    run.log += [{"phase": "lp", "step": f.iterations, "epoch": 0, "loss": f.objective, "loss_ft": f.cross_entropy,
                 "l2": f.l2, "val_accuracy": f.val_accuracy} for f in fits]
    if run.ctx.is_main:
        unconverged = [f.l2 for f in fits if not f.converged]
        print(f"linear probe: l2 {best.l2:g} (val accuracy {best.val_accuracy:.2f}) of {len(fits)} strengths"
              + (f"; not converged in {probe.MAX_ITER} iterations at l2 {unconverged}" if unconverged else ""),
              file=sys.stderr)


@torch.no_grad()
def val_metrics(run: Run) -> dict:
    """Group metrics of the student on the val split, with its own head or the zero-shot head of
    its text encoder, as the evaluate stage scores it."""
    from ..method.scoring import evaluate_splits, make_head

    classnames = run.dataset_cfg["classnames"]
    head = make_head(run.student_clip, run.clip.tokenizer, classnames, run.dataset_cfg["evaluate"]["templates"],
                     run.ctx.device, None if run.head is None else run.head.state_dict())
    split = run.cfg.get("val_split", "val")
    val, loader = split_loader(run, split, run.dataset_cfg["evaluate"]["batch_size"],
                               "finetune.select: val_worst_group")
    train = run.train_set
    train_counts = group_counts(*train.labels_and_attributes(), len(train.label_names), train.n_attributes)
    metrics = evaluate_splits(run.student_clip, head, {split: val}, {split: loader}, run.ctx.device, train_counts,
                              run.autocast_dtype)[split]
    run.student_clip.train()
    return metrics


class Selection:
    """Which weights the checkpoint holds (`finetune.select`): the last epoch's, or those of the
    epoch with the best val worst-group accuracy (the main process evaluates after each epoch)."""

    def __init__(self, rule: str = "last"):
        self.rule = rule
        self.history: list[dict] = []
        self.best: dict | None = None      # epoch, val_worst_group, model, head

    def after_epoch(self, run: Run, epoch: int) -> None:
        if self.rule == "last" or not run.ctx.is_main:
            return
        m = val_metrics(run)
        self.history.append({"epoch": epoch + 1, "val_worst_group": m["worst_group"], "val_average": m["average"]})
        run.log[-1]["val_worst_group"] = m["worst_group"]
        if self.best is None or m["worst_group"] > self.best["val_worst_group"]:
            model, head = run.weights()
            self.best = {"epoch": epoch + 1, "val_worst_group": m["worst_group"], "model": model, "head": head}

    def weights(self, run: Run) -> tuple[dict, dict | None]:
        return run.weights() if self.best is None else (self.best["model"], self.best["head"])

    def record(self, epochs: int) -> dict:
        if self.best is None:
            return {"rule": self.rule, "epoch": epochs}
        return {"rule": self.rule, "epoch": self.best["epoch"], "val_worst_group": self.best["val_worst_group"],
                "history": self.history}

    def state_dict(self) -> dict:
        return {"rule": self.rule, "history": self.history, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.history, self.best = state["history"], state["best"]


# ----------------------------------------------------------------------------------------------
# Checkpoints


def save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(run: Run) -> dict | None:
    """The last epoch checkpoint of an interrupted run, if it belongs to this very run: same
    hyper-parameters, seed, teacher and inputs (pools, prompt templates, captions, data folder)."""
    path = run.resume_path
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    keys = HPARAMS + ("method",)
    changed = [k for k in keys if run.cfg.get(k) != state["config"].get(k)]
    if state["teacher"]["fingerprint"] != run.clip.identity["fingerprint"]:
        changed.append("teacher")
    if state["seed"] != run.seed:
        changed.append("seed")
    if state.get("inputs") != run.inputs:
        changed.append("inputs (spurious pools, prompt templates, captions or data folder)")
    if changed:
        print(f"{path}: from another configuration ({', '.join(changed)} differ): starting afresh", file=sys.stderr)
        return None
    return state


def finish(run: Run, selection: Selection, epochs: int, step: int) -> dict:
    """Write the checkpoint and the log (main process); drop the resume file."""
    if run.ctx.is_main:
        final = run.state(epochs, step, selection.weights(run), selected=selection.record(epochs))
        save(run.out_dir / CHECKPOINT, final)
        with atomic_path(run.out_dir / LOG) as tmp:
            pd.DataFrame(run.log, columns=list(LOG_COLUMNS)).to_csv(tmp, index=False)
        run.resume_path.unlink(missing_ok=True)
    distributed.barrier(run.ctx)
    return {"checkpoint": str(run.out_dir / CHECKPOINT), "epochs": epochs, "steps": step, "log": run.log,
            "selected": selection.record(epochs)}


# ----------------------------------------------------------------------------------------------
# Fine-tuning


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


def fine_tune(run: Run, state: dict | None, progress: bool) -> dict:
    cfg, ctx, method = run.cfg, run.ctx, run.method
    loader, sampler, to_batch = train_loader(run)
    student = Student(run.student_clip, run.head)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                            fused=ctx.device.type in ("cuda", "cpu") or None)
    selection = Selection(cfg.get("select", "last"))
    start_epoch, epochs = 0, cfg["epochs"]
    if state is not None:
        run.student_clip.load_state_dict(state["model"])
        if run.head is not None:
            run.head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        selection.load_state_dict(state["selection"])
        start_epoch = state["epoch"]
        print(f"resuming {cfg['name']} seed {run.seed} from {run.resume_path} (epoch {start_epoch}/{epochs})",
              file=sys.stderr)
    model = distributed.wrap(ctx, student)
    teacher_images = TeacherImages(run.teacher, len(loader.dataset), cache=not cfg.get("augment", True))

    total_steps = len(loader) * epochs
    step = start_epoch * len(loader)
    bar = progress_bar(total=total_steps, initial=step, disable=not (progress and ctx.is_main),
                       desc=f"{cfg['name']} seed {run.seed}", dynamic_ncols=True, mininterval=0.5)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        lam = diminishing_lambda(cfg["lambda"], epoch, epochs, cfg["schedule"]) if method.regularizer else 0.0
        step = train_epoch(run, model, opt, loader, to_batch, teacher_images, epoch, lam, step, total_steps, bar)
        selection.after_epoch(run, epoch)
        if ctx.is_main:
            row = run.log[-1]
            print(f"{cfg['name']} seed {run.seed} epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} "
                  f"reg {row['regularizer'] or 0:.3e} lambda {lam:.3g} {row['images_per_s']:.0f} img/s"
                  + (f" val worst-group {row['val_worst_group']:.2f}" if row.get("val_worst_group") is not None else ""),
                  file=sys.stderr)
            save(run.resume_path, run.state(epoch + 1, step, run.weights(), optimizer=opt.state_dict(),
                                            rng=torch.get_rng_state(), selection=selection.state_dict()))
        distributed.barrier(ctx)
    bar.close()
    return finish(run, selection, epochs, step)


def train_epoch(run: Run, model, opt, loader, to_batch: Callable, teacher_images: TeacherImages, epoch: int,
                lam: float, step: int, total_steps: int, bar) -> int:
    """One pass over the training set; returns the global step count after it."""
    cfg, ctx, method = run.cfg, run.ctx, run.method
    log_every = cfg.get("log_every", 10)
    meter = Meter(ctx)
    for i, raw in enumerate(loader):
        lr = warmup_cosine_lr(step, cfg["lr"], cfg["warmup_steps"], total_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = prepare_batch(to_batch(raw), run.captions, method, ctx.device)
        loss, loss_ft, reg, scale = compute_loss(model, teacher_images, run.teacher_text, run.tau0, method, batch,
                                                 lam, ctx, run.autocast, cfg.get("kl_scale", "student"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meter.add(step, loss, loss_ft, reg)
        step += 1
        bar.update()
        if meter.n == log_every or i == len(loader) - 1:
            n, seconds, (mean_loss, mean_ft, mean_reg), bad = meter.flush()
            if bad is not None:
                bar.close()
                kept = run.resume_path if run.resume_path.exists() else "none (failed in the first epoch)"
                raise NonFiniteLossError(
                    f"{cfg['name']} seed {run.seed}: non-finite loss at step {bad} (epoch {epoch}, lr {lr:.3g}, "
                    f"lambda {lam:.3g}); stopped. The last good checkpoint is kept: {kept}. "
                    f"Lower finetune.lr or check the data.")
            run.log.append({"phase": "ft", "step": step, "epoch": epoch, "loss": mean_loss, "loss_ft": mean_ft,
                            "regularizer": mean_reg if method.regularizer else None, "lambda": lam, "lr": lr,
                            "logit_scale": float(scale.detach()), "images_per_s": n * cfg["batch_size"] / seconds})
            bar.set_postfix(loss=f"{mean_loss:.4f}", reg=f"{mean_reg:.2e}", refresh=False)
    return step


# ----------------------------------------------------------------------------------------------
# The run


def train(dataset_cfg: dict, cfg: dict, seed: int, embeddings: str | Path, out_dir: str | Path,
          progress: bool = True) -> dict:
    """Run one fine-tuning run; write out_dir/checkpoint.pt and out_dir/train_log.csv.

    `cfg` is a resolved run configuration (runs.run_config), checked against the schema here.
    Under torchrun every process calls this; rank 0 writes the files.
    """
    validate_run_config(cfg)
    ctx = distributed.setup(cfg.get("device", "auto"))
    try:
        return _train(dataset_cfg, cfg, seed, Path(embeddings), Path(out_dir), progress, ctx)
    finally:
        distributed.teardown(ctx)


def _train(dataset_cfg, cfg, seed, embeddings, out_dir, progress, ctx: distributed.Context) -> dict:
    method = METHODS[cfg["method"]]
    train_set = open_split(dataset_cfg, cfg.get("train_split", "train"))   # its layout checked before any model
    if cfg.get("select", "last") == "val_worst_group" and not train_set.group_names:
        raise FinetuneConfigError(f"finetune.select: val_worst_group needs a data set with groups; "
                                  f"{dataset_cfg['data']['dataset']} ({train_set.name}) has none: use select: last")
    if method.objective is not None:
        check_schedule(cfg, len(train_set.dataset), ctx.world_size)
    run = prepare(dataset_cfg, cfg, seed, embeddings, out_dir, ctx, train_set)
    state = load_resume(run)
    if state is not None:
        run.log, run.probe = state["log"], state.get("probe")
    elif method.linear_probe:
        fit_linear_probe(run)
    if method.objective is None:          # zeroshot and lp: nothing to fine-tune
        return finish(run, Selection(), 0, 0)
    return fine_tune(run, state, progress)
