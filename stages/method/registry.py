"""The methods of the comparison: what each one trains, and with which regulariser.

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
