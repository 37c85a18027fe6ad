"""Spuriosity drift: how far a run's view of the spurious captions has moved from the teacher's,
on a target's evaluation images (what StarFT's regulariser is meant to hold, measured held out).

For an image x with label y and the experiment's spurious captions s_1..s_K (the rows of kind
"spurious" of every pool in the teacher-text table: each template filled with each training class):

    p_teacher(j|x) = softmax_j tau0 <f0(x), g0(s_j)>        p_run(j|x) = softmax_j tau0 <f(x), g(s_j)>

f0 the teacher's image encoder, g0 the table's embeddings, f and g the run's encoders (g computed
once per job and weights point, like a zero-shot head), BOTH at the teacher's logit scale tau0.

    kl        = mean over x of KL(p_teacher(.|x) || p_run(.|x)), over all K captions
    masked_kl = the same with the captions of x's own class removed from both softmaxes:
                StarFT's label mask (losses.star_regularizer, whose formula this calls)

The direction is the regulariser's, KL(teacher || run) = sum_j p_teacher log(p_teacher / p_run)
(F.kl_div(log p_run, p_teacher)). A target whose labels are not the training classes (other class
names, or a label space of its own such as ObjectNet's) has masked_kl None: the mask needs each
image's training class; its kl is over all captions. The teacher itself has drift 0.
Memory: one batch's [B, K] logits; the sums over images are float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import kl_regularizer, star_regularizer
from .teacher_text import Embeddings

SCALE = "teacher"   # both distributions at the teacher's logit scale (the record says so)


@dataclass
class SpuriousCaptions:
    """The experiment's spurious captions, each once: texts, training class, g0, pool types."""

    texts: list[str]
    classes: torch.Tensor      # [K] long: the training class filled into caption j
    teacher: torch.Tensor      # [K, D] g0, L2-normalised
    pools: list[str]
    classnames: list[str]      # the training classes (the table's)
    logit_scale: float         # tau0

    @classmethod
    def from_embeddings(cls, emb: Embeddings, path) -> SpuriousCaptions:
        """The rows of kind "spurious" of a teacher-text table, one per (template, class); ValueError
        naming `path` (the table's file) when it has none."""
        rows = emb.rows("spurious")
        if rows.empty:
            raise ValueError(f"{path} holds no spurious captions (kind 'spurious'): no spuriosity drift "
                             f"can be measured; re-run the embed stage with the experiment's pools")
        # a template two pools share is one caption, as in fine-tuning's Captions
        rows = rows.drop_duplicates(["template", "class_index"])
        index = torch.tensor(rows.index.tolist())
        return cls(rows["text"].tolist(), torch.tensor(rows["class_index"].tolist(), dtype=torch.long),
                   emb.embeddings[index], sorted(set(rows["type"])), list(emb.meta["classnames"]),
                   float(emb.meta["logit_scale"]))

    def masks(self, classnames: list[str], label_names: list[str]) -> bool:
        """Whether a target's labels are training classes (so the label mask applies)."""
        return list(classnames) == self.classnames and list(label_names) == self.classnames


class DriftMeter:
    """One target's drift for every scoring point of a job, accumulated one batch at a time.

    run_text: {point: g(s) [K, D]}; teacher: images -> f0(x) normalised, or None when the run IS
    the teacher (a zero-shot run: its own image features are f0(x), no second forward)."""

    def __init__(self, captions: SpuriousCaptions, run_text: dict, masked: bool, teacher=None, device="cpu"):
        self.captions, self.run_text, self.masked, self.teacher = captions, run_text, masked, teacher
        self.g0 = captions.teacher.to(device)
        self.classes = captions.classes.to(device)
        self.reset()

    def reset(self) -> None:
        """Zero the sums and image counts of every point."""
        self.sums = {p: [0.0, 0.0] for p in self.run_text}
        self.n = {p: 0 for p in self.run_text}

    def teacher_features(self, images: torch.Tensor) -> torch.Tensor | None:
        """f0(images), normalised, or None when the run is the teacher (then `add` uses the run's own)."""
        return None if self.teacher is None else self.teacher(images)

    def add(self, point, run_image: torch.Tensor, teacher_image: torch.Tensor | None, labels: torch.Tensor) -> None:
        """One batch: run_image f(x) [B, D] at `point`, teacher_image f0(x) (None: f(x)), labels [B]."""
        b = len(labels)
        kw = {"student_image": run_image, "student_text": self.run_text[point],
              "teacher_image": run_image if teacher_image is None else teacher_image, "teacher_text": self.g0}
        tau0 = self.captions.logit_scale
        # batchmean x B: the batch's sum, so that the split's mean weights every image once
        self.sums[point][1] += b * float(kl_regularizer(**kw, logit_scale=tau0))
        if self.masked:
            self.sums[point][0] += b * float(star_regularizer(**kw, labels=labels.to(run_image.device),
                                                              logit_scale=tau0, text_labels=self.classes))
        self.n[point] += b

    def record(self, point) -> dict:
        """The drift at `point`: the means over the images added (None before any; masked_kl also None
        without the label mask) with the captions' count, pools and logit scale."""
        n = self.n[point]
        masked, kl = (s / n if n else None for s in self.sums[point])
        return {"masked_kl": masked if self.masked else None, "kl": kl, "n_images": n,
                "n_captions": len(self.captions.texts), "pools": list(self.captions.pools), "scale": SCALE}
