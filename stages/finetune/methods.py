"""The methods of the comparison and the resolution of one run's configuration.

Kept free of torch so that the Snakefile can validate method lists while it builds the DAG.

A run is named by an entry of `finetune.methods`: a base method below, or a key of
`finetune.variants` (a base method with overridden hyper-parameters, e.g. a lambda sweep or a
control of matched strength). `wiseft` is no training run: the evaluate stage interpolates the
checkpoint of `finetune.wiseft_of` with its zero-shot weights.
"""

from __future__ import annotations

from dataclasses import dataclass


class FinetuneConfigError(ValueError):
    """A fine-tune configuration that cannot run; the message names the key."""


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

# Keys that determine a run's result (a resume checkpoint must agree on all of them) ...
HPARAMS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "lp_epochs", "lp_lr", "lambda",
           "schedule", "augment", "crop_scale", "caption_template", "spurious_types", "precision")
# ... and keys that only say how to run it.
RUNTIME = ("device", "num_workers", "threads", "processes", "log_every")


def run_config(finetune: dict, name: str) -> dict:
    """The flat configuration of run `name`: its base method and every hyper-parameter."""
    variants = finetune.get("variants") or {}
    if name in METHODS:
        base, overrides = name, {}
    elif name in variants:
        overrides = dict(variants[name])
        base = overrides.pop("method")
    elif name in EVAL_ONLY:
        raise FinetuneConfigError(f"{name!r} has no training run: it is evaluated from the checkpoint "
                                  f"of finetune.wiseft_of ({finetune.get('wiseft_of')!r})")
    else:
        raise FinetuneConfigError(f"unknown method {name!r}: finetune.methods entries are one of "
                                  f"{sorted(METHODS)}, {list(EVAL_ONLY)} or a key of finetune.variants "
                                  f"({sorted(variants)})")
    cfg = {k: finetune[k] for k in HPARAMS + RUNTIME if k in finetune}
    cfg.update(overrides)
    cfg.update(name=name, method=base)
    return cfg


def trained_runs(finetune: dict) -> list[str]:
    """The entries of `finetune.methods` that have a fine-tune job (all but wiseft)."""
    return [m for m in finetune.get("methods", []) if m not in EVAL_ONLY]


def check(finetune: dict, where: str = "finetune") -> None:
    """Raise FinetuneConfigError naming the key if a method, variant or wiseft_of is unknown."""
    variants = finetune.get("variants") or {}
    for name in variants:
        if name in METHODS or name in EVAL_ONLY:
            raise FinetuneConfigError(f"{where}.variants.{name}: a variant cannot reuse a method's name")
    for name in finetune.get("methods", []):
        if name not in METHODS and name not in variants and name not in EVAL_ONLY:
            raise FinetuneConfigError(f"{where}.methods: unknown method {name!r}; known: {sorted(METHODS)}, "
                                      f"{list(EVAL_ONLY)} and the variants {sorted(variants)}")
    of = finetune.get("wiseft_of", "ft")
    base = variants[of]["method"] if of in variants else of
    if base not in METHODS or METHODS[base].objective is None:
        raise FinetuneConfigError(f"{where}.wiseft_of: {of!r} is not a fine-tuned method or variant")
