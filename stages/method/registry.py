"""The methods of the comparison: what each one trains, with which regulariser, and what its loss
reads (text tower, logit scale, head); the regularisers by what their formula does; a run (a
method or a config variant of one) labelled by what it changes (`run_label`).

Adding a regulariser (docs/architecture.md, "A regulariser"): an entry in `REGULARIZERS` here and
its loss in stages.method.losses.REGULARIZER_LOSSES; a method that uses it in `METHODS`. What a
run trains, the batch's captions, the loss of a step, the report's notes and the model card read
these entries.

Free of torch, so that the config check and the Snakefile can read it while they build the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Regularizer:
    """A regulariser of the fine-tuning loss, pulling the student's softmax over the batch's
    spurious captions towards the frozen teacher's."""

    words: str                   # what the report calls it
    label_masked: bool           # same-label captions are removed from both softmaxes (StarFT's mask)
    # finetune.kl_scale chooses the student's logit scale: its own learned one ("student") or the
    # teacher's tau0 ("teacher"); False: tau0 on both sides, always
    scale_option: bool


REGULARIZERS = {
    "star": Regularizer("StarFT (label-masked)", label_masked=True, scale_option=False),
    "kl": Regularizer("KL, no mask", label_masked=False, scale_option=True),
}


@dataclass(frozen=True)
class Method:
    """A method of the comparison: its fine-tuning objective, its regulariser (a key of
    REGULARIZERS) and whether a linear probe on frozen features comes first."""

    objective: str | None        # "flyp" (contrastive), "ce" (linear head) or None (no fine-tuning)
    regularizer: str | None      # a key of REGULARIZERS, or None
    linear_probe: bool = False   # fit a linear head on frozen features first (lp, lpft)

    @property
    def fine_tunes(self) -> bool:
        """Whether the student's weights are trained (lp only fits a head on frozen features)."""
        return self.objective is not None

    @property
    def trains(self) -> bool:
        """Whether a run of it learns anything (zeroshot is the teacher itself)."""
        return self.fine_tunes or self.linear_probe

    @property
    def has_head(self) -> bool:
        """A linear head scores it on its training label space (CE, or the probe's head)."""
        return self.objective == "ce" or self.linear_probe

    @property
    def uses_spurious(self) -> bool:
        """Its loss reads a spurious caption per sample (and the teacher's features)."""
        return self.regularizer is not None

    @property
    def trains_text(self) -> bool:
        """Its loss reaches the text tower: FLYP's class captions, the regulariser's spurious ones."""
        return self.objective == "flyp" or self.uses_spurious

    def student_scale(self, kl_scale: str) -> bool:
        """Whether the regulariser scales the student's logits by the student's own logit scale."""
        return self.uses_spurious and REGULARIZERS[self.regularizer].scale_option and kl_scale == "student"

    def trains_logit_scale(self, kl_scale: str) -> bool:
        """Whether the loss reaches the student's logit scale (DDP needs every trained parameter used)."""
        return self.objective == "flyp" or self.student_scale(kl_scale)


METHODS = {
    "zeroshot": Method(None, None),
    "lp": Method(None, None, linear_probe=True),
    "ft": Method("ce", None),
    "lpft": Method("ce", None, linear_probe=True),
    "flyp": Method("flyp", None),
    "flyp_kl": Method("flyp", "kl"),
    "starft": Method("flyp", "star"),
    "starft_ce": Method("ce", "star"),
}
EVAL_ONLY = ("wiseft",)


def regularizer_words(method: Method, cfg: dict) -> str | None:
    """The regulariser of a run in words (its kind, lambda, schedule, logit scales and, beyond the
    paper's class mask, its superclass mask), from its recorded configuration; None without one."""
    if not method.uses_spurious:
        return None
    regularizer = REGULARIZERS[method.regularizer]
    scale = "student's own scale" if method.student_scale(cfg["kl_scale"]) else "tau0 for both"
    words = regularizer.words
    if regularizer.label_masked and cfg.get("star_mask") == "superclass":   # older records: no such key
        words = words.replace("label-masked", "superclass-masked")
    return f"{words}, lambda {cfg['lambda']:g} {cfg['schedule']}, {scale}"


def _change(key: str, value) -> str:
    if key == "lambda":
        return f"lambda {value:g}"
    if key == "schedule":
        return f"{value} lambda"
    if key == "kl_scale":
        return f"the {value}'s logit scale"
    if key == "spurious_types":
        return "all pools" if value is None else f"{' + '.join(value)} pool" + ("s" if len(value) > 1 else "")
    return f"{key} {value}"


def run_label(finetune: dict, name: str) -> str:
    """A row of the tables by what it changes: a method's own name, or a variant's base method and
    its overrides in words (`starft_lam5` -> "starft, lambda 5"; `flyp_kl_student` -> "flyp_kl, the
    student's logit scale"). `finetune` is an experiment's finetune section."""
    variant = (finetune.get("variants") or {}).get(name)
    if variant is None:
        return name
    changes = [_change(k, v) for k, v in variant.items() if k != "method"]
    return ", ".join([variant["method"], *changes])
