"""One training step's loss: FLYP or cross-entropy, optionally with StarFT's regulariser (docs/method.md).

Holds the student (`Student`, `set_trainable`), the frozen teacher's image features
(`TeacherImages`), a batch on the device (`Batch`, `prepare_batch`) and its loss (`compute_loss`).

Per step, for a batch of images x_i with labels y_i, class captions t_i and spurious captions s_i:

    loss = L_ft + lambda_e * L_star
    L_ft   = contrastive(f(x), g(t), tau)              (flyp)  or  CE(head(f(x)), y)   (ce)
    L_star = KL(softmax tau0 <f0(x_i), g0(s_j)> || softmax tau0 <f(x_i), g(s_j)>)  over other-class j

What a method's loss reads (text tower, logit scale, spurious captions) and which regulariser it
adds are its registry entry's (stages.method.registry); the regulariser's formula is in
stages.method.losses.REGULARIZER_LOSSES. Nothing here names a method or a regulariser.

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

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..method.losses import REGULARIZER_LOSSES, clip_contrastive_loss, target_share, widen
from ..method.models import encode_text, trim_tokens
from ..method.zeroshot import LinearHead
from . import distributed
from ..method.registry import REGULARIZERS, Method
from .captions import Captions


class Student(torch.nn.Module):
    """The model being fine-tuned; one forward gives everything any loss needs (one DDP call)."""

    def __init__(self, clip: torch.nn.Module, head: LinearHead | None):
        super().__init__()
        self.clip, self.head = clip, head

    def forward(self, images, tokens=None):
        """(image features [b, D], text features of `tokens` [u, D] or None, head logits [b, C] or None,
        the logit scale, exponentiated); features unnormalised."""
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


def set_trainable(clip: torch.nn.Module, method: Method, kl_scale: str) -> None:
    """Freeze what the method's loss does not reach (DDP needs every trainable parameter used);
    `kl_scale` is the run's finetune.kl_scale."""
    for name, p in clip.named_parameters():
        if name == "logit_scale":
            p.requires_grad_(method.trains_logit_scale(kl_scale))
        elif not name.startswith("visual."):
            p.requires_grad_(method.trains_text)
        else:
            p.requires_grad_(True)


@dataclass
class Batch:
    """One training batch on the device, with the distinct caption tokens its loss reads."""
    images: torch.Tensor      # [b, 3, H, W] on the device
    y: torch.Tensor           # [b] on the device
    index: torch.Tensor       # [b] dataset indices, on CPU (teacher-image cache)
    spurious: torch.Tensor    # [b] table rows of the spurious captions (-1: none), on the device
    tokens: torch.Tensor | None    # [u, context] distinct captions of the batch, on the device
    inverse: torch.Tensor | None   # [n_captions * b] -> row of `tokens`


def prepare_batch(raw, captions: Captions, method: Method, device) -> Batch:
    """A loader batch (images, y, index, spurious row) on the device, with the token rows of the
    captions the method's loss reads: FLYP's class caption of each sample, then its spurious one."""
    images, y, index, spurious = raw
    rows = []
    if method.objective == "flyp":
        rows.append(captions.caption_row[y])
    if method.uses_spurious:
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


class StepLoss(NamedTuple):
    """One batch's loss and its parts (0-d tensors): total = ft + lambda_e * regularizer."""

    total: torch.Tensor
    ft: torch.Tensor             # L_ft: FLYP's contrastive loss or the head's cross-entropy
    regularizer: torch.Tensor    # L_reg (0 without a regulariser)
    logit_scale: torch.Tensor    # the student's learned logit scale
    # the KL target's mass on captions of each image's own superclass (0 without superclasses)
    superclass_share: torch.Tensor


@dataclass(frozen=True)
class Superclasses:
    """The training set's superclass of each class ([C] indices, on the device) and whether the
    regulariser masks by superclass (finetune.star_mask) instead of by class."""

    of: torch.Tensor
    mask: bool


def compute_loss(model, teacher_images: TeacherImages, teacher_text: torch.Tensor, tau0: float,
                 method: Method, batch: Batch, lam: float, ctx: distributed.Context, autocast,
                 kl_scale: str, superclasses: Superclasses | None = None) -> StepLoss:
    """The loss of one batch; under torchrun, of the global batch.

    The losses are computed in float32 at least (bf16 features under autocast; float64 kept).
    `kl_scale` (finetune.kl_scale) says which scale the student's logits use in a regulariser
    that offers the choice (Method.student_scale). With the training set's `superclasses`, a
    label-masked regulariser masks by superclass where they say so, and the step measures its KL
    target's mass on each image's own superclass.
    """
    with autocast():
        image, text, logits, scale = model(batch.images, batch.tokens)
        teacher_image = teacher_images(batch.images, batch.index) if method.uses_spurious else None
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

    reg = share = torch.zeros((), device=image.device)
    if method.uses_spurious:
        spurious = gather(batch.spurious)
        mask_labels = all_y if superclasses is None or not superclasses.mask else superclasses.of[all_y]
        target_image, target_text = gather(teacher_image), teacher_text[spurious]
        reg = REGULARIZER_LOSSES[method.regularizer](
            all_image, gather(text[-b:]), target_image, target_text, mask_labels, tau0,
            scale if method.student_scale(kl_scale) else None)
        if superclasses is not None:
            sup = superclasses.of[all_y]
            masked = mask_labels if REGULARIZERS[method.regularizer].label_masked else None
            share = target_share(target_image, target_text, tau0, masked, sup[:, None] == sup[None, :])
    return StepLoss(loss_ft + lam * reg, loss_ft, reg, scale, share)
