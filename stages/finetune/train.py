"""The fine-tuning loop: FLYP or cross-entropy, optionally with StarFT's regulariser (DESIGN.md 1).

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
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import data as data_mod
from ..embed import Embeddings, read_embeddings
from ..io import atomic_path, versions
from ..losses import clip_contrastive_loss, diminishing_lambda, kl_regularizer, star_regularizer
from ..models import can_trim_text, encode_text, load_clip, trim_tokens
from ..schedule import warmup_cosine_lr
from ..zeroshot import LinearHead, encode_images
from . import distributed
from .data import EpochSampler, FixedTransform, SeededCropTransform, TrainSet
from .methods import HPARAMS, METHODS, FinetuneConfigError, Method

CHECKPOINT, RESUME, LOG = "checkpoint.pt", "resume.pt", "train_log.csv"
LOG_COLUMNS = ("phase", "step", "epoch", "loss", "loss_ft", "regularizer", "lambda", "lr", "logit_scale", "images_per_s")


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

    @classmethod
    def build(cls, emb: Embeddings, tokenizer, classnames: list[str], cfg: dict, path, need_spurious: bool):
        table = emb.table
        caption = table[(table["kind"] == "caption") & (table["template"] == cfg["caption_template"])]
        caption_row = _rows_by_class(caption, len(classnames), path, f"caption template {cfg['caption_template']!r}")
        spurious_rows = None
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
        return cls(tokenizer(table["text"].tolist()), caption_row, spurious_rows)


def _rows_by_class(rows: pd.DataFrame, n_classes: int, path, what: str) -> torch.Tensor:
    found = dict(zip(rows["class_index"], rows.index))
    missing = [c for c in range(n_classes) if c not in found]
    if missing:
        raise FinetuneConfigError(f"{path} has no embedding of {what} for class(es) {missing}: re-run the embed stage")
    return torch.tensor([found[c] for c in range(n_classes)])


def zeroshot_class_weights(emb: Embeddings, templates: list[str], n_classes: int, path) -> torch.Tensor:
    """The teacher's zero-shot head [C, D] from the table (same as zeroshot.zeroshot_weights)."""
    rows = emb.rows("class_prompt")
    feats = []
    for t in templates:
        idx = _rows_by_class(rows[rows["template"] == t], n_classes, path, f"class prompt {t!r} (evaluate.templates)")
        feats.append(emb.embeddings[idx])
    return F.normalize(torch.stack(feats, dim=1).mean(dim=1), dim=-1)


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
            return F.normalize(self.model.encode_image(images).float(), dim=-1)
        missing = ~self.filled[index]                       # on CPU: no device sync
        if missing.any():
            feats = F.normalize(self.model.encode_image(images[missing.to(images.device)]).float(), dim=-1)
            if self.features is None:
                self.features = torch.zeros(len(self.filled), feats.shape[1], device=feats.device)
            self.features[index[missing].to(feats.device)] = feats
            self.filled[index[missing]] = True
        return self.features[index.to(self.features.device)]


def set_trainable(clip: torch.nn.Module, method: Method) -> None:
    """Freeze what the method's loss does not reach (DDP needs every trainable parameter used)."""
    uses_text = method.objective == "flyp" or method.regularizer is not None
    uses_scale = method.objective == "flyp" or method.regularizer == "kl"
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
                 method: Method, batch: Batch, lam: float, ctx: distributed.Context, autocast):
    """(loss, L_ft, L_reg, student logit scale) of one batch; under torchrun, of the global batch."""
    with autocast():
        image, text, logits, scale = model(batch.images, batch.tokens)
        teacher_image = teacher_images(batch.images, batch.index) if method.regularizer else None
    b = len(batch.y)
    image = F.normalize(image.float(), dim=-1)
    if text is not None:
        text = F.normalize(text.float(), dim=-1)[batch.inverse]      # one row per (caption, sample)
    gather = lambda x: distributed.gather(ctx, x)                      # noqa: E731
    all_image, all_y = gather(image), gather(batch.y)

    if method.objective == "flyp":
        loss_ft = clip_contrastive_loss(all_image, gather(text[:b]), scale)
    else:
        loss_ft = F.cross_entropy(logits.float(), batch.y)

    reg = torch.zeros((), device=image.device)
    if method.regularizer is not None:
        spurious = gather(batch.spurious)
        kw = dict(student_image=all_image, student_text=gather(text[-b:]),
                  teacher_image=gather(teacher_image), teacher_text=teacher_text[spurious])
        if method.regularizer == "star":
            reg = star_regularizer(**kw, labels=all_y, logit_scale=tau0)
        else:
            reg = kl_regularizer(**kw, logit_scale=tau0, student_logit_scale=scale)
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
# Checkpoints


def checkpoint_state(clip, head, cfg, teacher_identity, tau0, seed, epoch, step, log) -> dict:
    cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
    return {"model": cpu(clip.state_dict()), "head": None if head is None else cpu(head.state_dict()),
            "method": cfg["method"], "name": cfg["name"], "epoch": epoch, "step": step, "seed": seed,
            "config": cfg, "teacher": teacher_identity, "teacher_logit_scale": tau0,
            "versions": versions(), "log": log}


def save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(path: Path, cfg: dict, teacher_identity: dict, seed: int) -> dict | None:
    """The last epoch checkpoint of an interrupted run, if it belongs to this very run."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    mine = {k: cfg.get(k) for k in HPARAMS + ("method",)}
    theirs = {k: state["config"].get(k) for k in HPARAMS + ("method",)}
    if mine != theirs or state["teacher"]["fingerprint"] != teacher_identity["fingerprint"] or state["seed"] != seed:
        changed = sorted(k for k in mine if mine[k] != theirs[k])
        print(f"{path}: from another configuration ({changed or 'teacher or seed'} differ): starting afresh",
              file=sys.stderr)
        return None
    return state


# ----------------------------------------------------------------------------------------------
# The run


def linear_probe(model, head: LinearHead, images: data_mod.GroupDataset, cfg: dict, seed: int,
                 ctx: distributed.Context, autocast_dtype) -> list[dict]:
    """Fit `head` on frozen, un-augmented image features (lp, and LP-FT's first stage).

    AdamW at lp_lr with no weight decay (decay would pull the zero-shot initialisation to 0).
    Every rank fits the same probe on all images: cheap next to fine-tuning, and no gather.
    """
    loader = torch.utils.data.DataLoader(images, batch_size=cfg["batch_size"], num_workers=cfg["num_workers"],
                                         pin_memory=ctx.device.type == "cuda")
    feats, y, _ = encode_images(model, loader, ctx.device, desc="linear-probe features", autocast_dtype=autocast_dtype)
    feats, y = feats.to(ctx.device), y.to(ctx.device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg["lp_lr"], weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    log = []
    for epoch in range(cfg["lp_epochs"]):
        total = torch.zeros((), device=ctx.device)
        for idx in torch.randperm(len(y), generator=g).split(cfg["batch_size"]):
            idx = idx.to(ctx.device)
            loss = F.cross_entropy(head(feats[idx]).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        log.append({"phase": "lp", "step": epoch + 1, "epoch": epoch, "loss": float(total) / len(y),
                    "loss_ft": float(total) / len(y), "lr": cfg["lp_lr"]})
    return log


def train(dataset_cfg: dict, cfg: dict, seed: int, embeddings: str | Path, out_dir: str | Path,
          progress: bool = True) -> dict:
    """Run one fine-tuning run; write out_dir/checkpoint.pt and out_dir/train_log.csv.

    `cfg` is a resolved run configuration (methods.run_config). Under torchrun every process calls
    this; rank 0 writes the files.
    """
    ctx = distributed.setup(cfg.get("device", "auto"))
    try:
        return _train(dataset_cfg, cfg, seed, Path(embeddings), Path(out_dir), progress, ctx)
    finally:
        distributed.teardown(ctx)


def _train(dataset_cfg, cfg, seed, embeddings, out_dir, progress, ctx: distributed.Context) -> dict:
    method = METHODS[cfg["method"]]
    threads = cfg.get("threads", 0)
    if threads:   # the job's threads, shared by the processes of this machine
        torch.set_num_threads(max(1, threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = cfg.get("precision", "auto")
    autocast_dtype = torch.bfloat16 if precision == "bf16" or (precision == "auto" and cuda) else None
    autocast = lambda: torch.autocast(ctx.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)  # noqa: E731
    torch.manual_seed(seed)

    classnames = dataset_cfg["classnames"]
    model_cfg = dataset_cfg["model"]
    clip = load_clip(model_cfg["name"], model_cfg.get("pretrained"), device=ctx.device)
    teacher = clip.model.eval().requires_grad_(False)
    tau0 = float(teacher.logit_scale.exp())
    emb = read_embeddings(embeddings, expected_fingerprint=clip.identity["fingerprint"], classnames=classnames)
    captions = Captions.build(emb, clip.tokenizer, classnames, cfg, embeddings, method.regularizer is not None)
    captions.trim = can_trim_text(teacher)
    teacher_text = emb.embeddings.to(ctx.device)

    student_clip = copy.deepcopy(teacher).train()
    head = None
    if method.has_head:
        zs = zeroshot_class_weights(emb, dataset_cfg["evaluate"]["templates"], len(classnames), embeddings)
        head = LinearHead(zs, tau0).to(ctx.device)
    set_trainable(student_clip, method)

    out_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / RESUME
    state = load_resume(resume_path, cfg, clip.identity, seed)
    log = state["log"] if state else []
    root = dataset_cfg["data"]["root"]
    meta = data_mod.read_metadata(root)

    if method.linear_probe and state is None:
        log += linear_probe(teacher, head, data_mod.GroupDataset(root, "train", clip.preprocess_val, meta),
                            cfg, seed, ctx, autocast_dtype)

    def finish(epoch, step):
        final = checkpoint_state(student_clip, head, cfg, clip.identity, tau0, seed, epoch, step, log)
        if ctx.is_main:
            save(out_dir / CHECKPOINT, final)
            with atomic_path(out_dir / LOG) as tmp:
                pd.DataFrame(log, columns=list(LOG_COLUMNS)).to_csv(tmp, index=False)
            resume_path.unlink(missing_ok=True)
        distributed.barrier(ctx)
        return {"checkpoint": str(out_dir / CHECKPOINT), "epochs": epoch, "steps": step, "log": log}

    if method.objective is None:            # zeroshot and lp: nothing to fine-tune
        return finish(0, 0)

    # Data: per-rank batches of B / W samples; the W ranks together hold the global batch.
    batch_size, world = cfg["batch_size"], ctx.world_size
    if batch_size % world:
        raise FinetuneConfigError(f"finetune.batch_size={batch_size} is not divisible by the {world} processes")
    transform = SeededCropTransform(teacher, cfg["crop_scale"]) if cfg.get("augment", True) \
        else FixedTransform(clip.preprocess_val)
    images = data_mod.GroupDataset(root, "train", None, meta)
    if len(images) < batch_size:
        raise FinetuneConfigError(f"finetune.batch_size={batch_size} exceeds the {len(images)} training images of {root}")
    trainset = TrainSet(images, transform, seed, captions.spurious_rows)
    sampler = EpochSampler(trainset, num_replicas=world, rank=ctx.rank, shuffle=True, seed=seed)
    workers = cfg.get("num_workers", 0)
    loader = torch.utils.data.DataLoader(
        trainset, batch_size=batch_size // world, sampler=sampler, drop_last=True, num_workers=workers,
        pin_memory=cuda, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
    steps_per_epoch, epochs = len(loader), cfg["epochs"]
    total_steps = steps_per_epoch * epochs

    student = Student(student_clip, head)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=cuda or None)
    start_epoch = 0
    if state is not None:
        student_clip.load_state_dict(state["model"])
        if head is not None:
            head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start_epoch = state["epoch"]
        print(f"resuming {cfg['name']} seed {seed} from {resume_path} (epoch {start_epoch}/{epochs})", file=sys.stderr)
    model = distributed.wrap(ctx, student)
    teacher_images = TeacherImages(teacher, len(images), cache=not cfg.get("augment", True))

    step = start_epoch * steps_per_epoch
    log_every = cfg.get("log_every", 10)
    bar = tqdm(total=total_steps, initial=step, disable=not (progress and ctx.is_main), dynamic_ncols=True,
               desc=f"{cfg['name']} seed {seed}", mininterval=0.5 if sys.stderr.isatty() else 30)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        lam = diminishing_lambda(cfg["lambda"], epoch, epochs, cfg["schedule"]) if method.regularizer else 0.0
        meter = Meter(ctx)
        for i, raw in enumerate(loader):
            lr = warmup_cosine_lr(step, cfg["lr"], cfg["warmup_steps"], total_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = prepare_batch(raw, captions, method, ctx.device)
            loss, loss_ft, reg, scale = compute_loss(model, teacher_images, teacher_text, tau0, method, batch, lam, ctx, autocast)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            meter.add(step, loss, loss_ft, reg)
            step += 1
            bar.update()
            if meter.n == log_every or i == steps_per_epoch - 1:
                n, seconds, (mean_loss, mean_ft, mean_reg), bad = meter.flush()
                if bad is not None:
                    bar.close()
                    raise NonFiniteLossError(
                        f"{cfg['name']} seed {seed}: non-finite loss at step {bad} (epoch {epoch}, lr {lr:.3g}, "
                        f"lambda {lam:.3g}); stopped. The last good checkpoint is kept: "
                        f"{resume_path if resume_path.exists() else 'none (failed in the first epoch)'}. "
                        f"Lower finetune.lr or check the data.")
                log.append({"phase": "ft", "step": step, "epoch": epoch, "loss": mean_loss, "loss_ft": mean_ft,
                            "regularizer": mean_reg if method.regularizer else None, "lambda": lam, "lr": lr,
                            "logit_scale": float(scale.detach()), "images_per_s": n * batch_size / seconds})
                bar.set_postfix(loss=f"{mean_loss:.4f}", reg=f"{mean_reg:.2e}", refresh=False)
        if ctx.is_main:
            print(f"{cfg['name']} seed {seed} epoch {epoch + 1}/{epochs}: loss {log[-1]['loss']:.4f} "
                  f"reg {log[-1]['regularizer'] or 0:.3e} lambda {lam:.3g} {log[-1]['images_per_s']:.0f} img/s",
                  file=sys.stderr)
            resume = checkpoint_state(student_clip, head, cfg, clip.identity, tau0, seed, epoch + 1, step, log)
            resume.update(optimizer=opt.state_dict(), rng=torch.get_rng_state())
            save(resume_path, resume)
        distributed.barrier(ctx)
    bar.close()
    return finish(epochs, step)
