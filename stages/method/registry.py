"""The methods of the comparison: what each one trains, and with which regulariser; a run (a
method or a config variant of one) labelled by what it changes (`run_label`).

Free of torch, so that the config check and the Snakefile can read it while they build the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    objective: str | None        # "flyp" (contrastive), "ce" (linear head) or None (no fine-tuning)
    regularizer: str | None      # "star", "kl" or None
    linear_probe: bool = False   # fit a linear head on frozen features first (lp, lpft)

    @property
    def has_head(self) -> bool:
        return self.objective == "ce" or self.linear_probe


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
