"""The training losses (docs/method.md, "The losses"), each a few lines that read like the equation.

All features are L2-normalised, shape [B, D]; row i of an image tensor and row i of a text tensor
belong to sample i. The losses compute in float32 whatever the features' dtype (bf16 under
autocast), because the mask value -1e8 and the softmaxes need the range (float64 stays float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED = -1e8  # the released code's mask value: exp(-1e8 - max) is exactly 0 in float32


def widen(x: torch.Tensor) -> torch.Tensor:
    """float32 at least (bf16 features under autocast), float64 kept."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def clip_contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale) -> torch.Tensor:
    """FLYP's loss: symmetric InfoNCE between images and their captions, targets = arange(B).

    Same-class duplicates in the batch are negatives, as in FLYP and open_clip's `ClipLoss`.
    """
    logits = logit_scale * widen(image) @ widen(text).T
    targets = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def star_regularizer(student_image: torch.Tensor, student_text: torch.Tensor,
                     teacher_image: torch.Tensor, teacher_text: torch.Tensor,
                     labels: torch.Tensor, logit_scale, text_labels: torch.Tensor | None = None) -> torch.Tensor:
    """StarFT's regulariser: (1/B) sum_i KL(softmax_j T_ij || softmax_j S_ij) over other-class captions.

    T_ij = tau0 <f0(x_i), g0(s_j)> and S_ij = tau0 <f(x_i), g(s_j)> (the student uses the
    TEACHER's scale tau0 = `logit_scale`), with every pair of the same class (the diagonal
    included) masked to -1e8. A row whose entries are all masked (a single-class batch) is
    uniform in both softmaxes, so it contributes exactly 0: no NaN.

    `text_labels` [K]: the class of each caption s_j when the captions are not the batch's own
    (the evaluation's spuriosity drift scores every image against a fixed caption set); by
    default caption j belongs to sample j, labels[j].
    """
    same_class = labels[:, None] == (labels if text_labels is None else text_labels)[None, :]
    teacher = (logit_scale * widen(teacher_image) @ widen(teacher_text).T).masked_fill(same_class, MASKED)
    student = (logit_scale * widen(student_image) @ widen(student_text).T).masked_fill(same_class, MASKED)
    return F.kl_div(F.log_softmax(student, dim=1), F.softmax(teacher, dim=1), reduction="batchmean")


def kl_regularizer(student_image: torch.Tensor, student_text: torch.Tensor,
                   teacher_image: torch.Tensor, teacher_text: torch.Tensor,
                   logit_scale, student_logit_scale=None) -> torch.Tensor:
    """The ablation "kl": the same KL with no label mask.

    The teacher's logits use tau0 = `logit_scale`; the student's use `student_logit_scale` (the
    student's own scale, docs/method.md) or tau0 when it is None (what the released code runs: its
    line with the student's scale is commented out).
    """
    student_scale = logit_scale if student_logit_scale is None else student_logit_scale
    teacher = logit_scale * widen(teacher_image) @ widen(teacher_text).T
    student = student_scale * widen(student_image) @ widen(student_text).T
    return F.kl_div(F.log_softmax(student, dim=1), F.softmax(teacher, dim=1), reduction="batchmean")


@torch.no_grad()
def target_share(teacher_image: torch.Tensor, teacher_text: torch.Tensor, logit_scale, mask_labels: torch.Tensor | None,
                 share: torch.Tensor) -> torch.Tensor:
    """The KL target's mass on captions that `share` [B, B] marks for each row (an image's own
    superclass): the mean over rows of sum_j softmax_j(T_i.)[share_ij], T the teacher's logits at
    tau0 = `logit_scale`, masked as the regulariser masks them (`mask_labels` [B]: same-label
    captions removed; None: no mask). Rows with every caption masked carry no target and are left out."""
    logits = logit_scale * widen(teacher_image) @ widen(teacher_text).T
    if mask_labels is not None:
        masked = mask_labels[:, None] == mask_labels[None, :]
        logits = logits.masked_fill(masked, MASKED)
        rows = ~masked.all(dim=1)
    else:
        rows = torch.ones(len(logits), dtype=torch.bool, device=logits.device)
    mass = (F.softmax(logits, dim=1) * share).sum(dim=1)
    return mass[rows].mean() if rows.any() else torch.zeros((), device=logits.device)


def _star(student_image, student_text, teacher_image, teacher_text, labels, logit_scale, student_logit_scale):
    return star_regularizer(student_image, student_text, teacher_image, teacher_text, labels, logit_scale)


def _kl(student_image, student_text, teacher_image, teacher_text, labels, logit_scale, student_logit_scale):
    return kl_regularizer(student_image, student_text, teacher_image, teacher_text, logit_scale, student_logit_scale)


# The loss of each regulariser of stages.method.registry.REGULARIZERS, called with one signature:
# the student's and teacher's features [B, D] of the batch's images and spurious captions, the
# labels [B], tau0, and the student's own logit scale where the run gives it one (else None).
REGULARIZER_LOSSES = {"star": _star, "kl": _kl}


def diminishing_lambda(lam: float, epoch: int, epochs: int, schedule: str = "diminishing") -> float:
    """lambda_e = lambda * (1 - (e + 1) / E) for 0-based epoch e: the last epoch has weight 0."""
    if schedule == "constant":
        return lam
    if schedule == "diminishing":
        return lam * (1 - (epoch + 1) / epochs)
    raise ValueError(f"finetune.schedule: unknown schedule {schedule!r} (diminishing | constant)")
