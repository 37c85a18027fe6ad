"""A run's configuration: its method or variant resolved, its hyper-parameters checked.

Kept free of torch so that the Snakefile can validate method lists while it builds the DAG.

A run is named by an entry of `finetune.methods`: a base method of stages.method.registry, or a key of
`finetune.variants` (a base method with overridden hyper-parameters, e.g. a lambda sweep or a
control of matched strength). `wiseft` is no training run: the evaluate stage interpolates the
checkpoint of `finetune.wiseft_of` with its zero-shot weights.
"""

from __future__ import annotations

import math

import jsonschema

from .. import config as stage_config
from ..method.registry import EVAL_ONLY, METHODS


class FinetuneConfigError(ValueError):
    """A fine-tune configuration that cannot run; the message names the key."""


# Keys that determine a run's result (a resume checkpoint must agree on all of them) ...
HPARAMS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "lp_l2_grid", "lambda", "schedule",
           "kl_scale", "augment", "crop_scale", "caption_template", "spurious_types", "spurious_sampling", "select",
           "precision")
# ... and keys that only say how to run it.
RUNTIME = ("device", "num_workers", "threads", "processes", "log_every", "train_split", "val_split", "decode")


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


def validate_run_config(cfg: dict) -> dict:
    """Check a resolved run configuration (e.g. after `--set`) against the schema's `finetune` keys.

    Raises FinetuneConfigError naming the key, so that `--set lr=abc` or `--set epochs=0` fails like
    the same value in a config file would.
    """
    schema = stage_config.load_schema()
    keys = HPARAMS + RUNTIME
    finetune = schema["$defs"]["finetune"]["properties"]
    sub = {"$defs": schema["$defs"], "type": "object", "properties": {k: finetune[k] for k in keys}}
    errors = sorted(jsonschema.Draft202012Validator(sub).iter_errors({k: v for k, v in cfg.items() if k in keys}),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise FinetuneConfigError("; ".join(f"finetune.{'.'.join(map(str, e.absolute_path))}: {e.message}"
                                            for e in errors))
    if cfg.get("method") not in METHODS:
        raise FinetuneConfigError(f"unknown base method {cfg.get('method')!r}; known: {sorted(METHODS)}")
    return cfg


def steps_per_epoch(n_images: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps of one epoch: DistributedSampler pads to ceil(n / W) per rank, drop_last batches."""
    return math.ceil(n_images / world_size) // (batch_size // world_size)


def check_schedule(cfg: dict, n_images: int, world_size: int = 1) -> int:
    """The run's total steps; FinetuneConfigError if the batch or the warm-up does not fit the data.

    A warm-up as long as the run keeps the learning rate below its peak for the whole run (in-task
    Waterbirds at batch 512: 90 steps against the paper's ImageNet warm-up of 500).
    """
    batch, epochs, warmup = cfg["batch_size"], cfg["epochs"], cfg["warmup_steps"]
    if batch % world_size:
        raise FinetuneConfigError(f"finetune.batch_size={batch} is not divisible by the {world_size} processes")
    if n_images < batch:
        raise FinetuneConfigError(f"finetune.batch_size={batch} exceeds the {n_images} training images")
    steps = steps_per_epoch(n_images, batch, world_size)
    total = steps * epochs
    if warmup >= total:
        raise FinetuneConfigError(
            f"finetune.warmup_steps={warmup} is not shorter than the run of {cfg['name']}: {n_images} training "
            f"images / batch {batch} = {steps} steps per epoch x {epochs} epochs = {total} steps; "
            f"use e.g. warmup_steps: {total // 10}")
    return total


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
