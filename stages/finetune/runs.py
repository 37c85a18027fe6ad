"""A run's configuration: its method or variant resolved (`run_config`), validated once into a
typed `RunConfig`, its schedule checked against the data (`check_schedule`).

Kept free of torch so that the Snakefile can validate method lists while it builds the DAG.

A run is named by an entry of `finetune.methods`: a base method of stages.method.registry, or a key of
`finetune.variants` (a base method with overridden hyper-parameters, e.g. a lambda sweep or a
control of matched strength). `wiseft` is no training run: the evaluate stage interpolates the
checkpoint of `finetune.wiseft_of` with its zero-shot weights.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

from .. import config as stage_config
from ..method.registry import EVAL_ONLY, METHODS, Method


class FinetuneConfigError(ValueError):
    """A fine-tune configuration that cannot run; the message names the key."""


def _hparam(key: str | None = None):
    """A key that determines the run's result: a resume checkpoint must agree on all of them."""
    return field(metadata={"role": "hparam", **({"key": key} if key else {})})


def _runtime():
    """A key that only says how to run it."""
    return field(metadata={"role": "runtime"})


@dataclass(frozen=True)
class RunConfig:
    """One run's configuration, every key of the schema's `finetune` section that a run reads,
    its defaults filled. Built once per process by `from_dict`, which validates it; then read by
    attribute. The config key `lambda` is the attribute `lam` (a Python keyword)."""

    name: str                   # the run's name: a method or a variant
    method: str                 # its base method (stages.method.registry.METHODS)
    epochs: int = _hparam()
    batch_size: int = _hparam()
    lr: float = _hparam()
    weight_decay: float = _hparam()
    warmup_steps: int = _hparam()
    lp_l2_grid: list = _hparam()
    lam: float = _hparam("lambda")
    schedule: str = _hparam()
    kl_scale: str = _hparam()
    augment: bool = _hparam()
    crop_scale: list = _hparam()
    caption_template: str = _hparam()
    spurious_types: list | None = _hparam()
    spurious_sampling: str = _hparam()
    select: str = _hparam()
    precision: str = _hparam()
    star_mask: str = _hparam()
    device: str = _runtime()
    num_workers: int = _runtime()
    threads: int = _runtime()
    processes: int = _runtime()
    log_every: int = _runtime()
    track: list = _runtime()
    train_split: str = _runtime()
    val_split: str = _runtime()
    decode: str = _runtime()
    grad_checkpointing: bool = _runtime()

    @classmethod
    def from_dict(cls, cfg: dict) -> RunConfig:
        """Validate a run configuration (`run_config`'s, a `--run-config` JSON, `--set` overrides)
        against the schema's `finetune` keys, fill the defaults; FinetuneConfigError names the key."""
        cfg = dict(cfg)
        unknown = sorted(set(cfg) - {"name", "method", *HPARAMS, *RUNTIME})
        if unknown:
            raise FinetuneConfigError(f"run configuration: unknown key(s) {unknown}; known: "
                                      f"{sorted(HPARAMS + RUNTIME)}")
        if cfg.get("method") not in METHODS:
            raise FinetuneConfigError(f"unknown base method {cfg.get('method')!r}; known: {sorted(METHODS)}")
        if not isinstance(cfg.get("name"), str):
            raise FinetuneConfigError(f"run configuration: no run name (got {cfg.get('name')!r})")
        errors = sorted(_validator().iter_errors(cfg), key=lambda e: list(e.absolute_path))
        if errors:
            raise FinetuneConfigError("; ".join(f"finetune.{stage_config.key_path(e)}: {e.message}" for e in errors))
        cfg["num_workers"] = loader_workers(cfg)
        return cls(**{f.name: cfg[_key(f)] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict:
        """The configuration under its config keys (what a checkpoint records)."""
        return {_key(f): getattr(self, f.name) for f in dataclasses.fields(self)}

    def hparams(self) -> dict:
        """The keys that determine the run's result, under their config keys."""
        return {k: v for k, v in self.as_dict().items() if k in HPARAMS}

    @property
    def base(self) -> Method:
        """The base method's registry entry: what the run's loss reads and trains."""
        return METHODS[self.method]


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


HPARAMS = tuple(_key(f) for f in dataclasses.fields(RunConfig) if f.metadata.get("role") == "hparam")
RUNTIME = tuple(_key(f) for f in dataclasses.fields(RunConfig) if f.metadata.get("role") == "runtime")


@functools.cache
def _validator():
    """The schema's `finetune` keys of a run as one object schema, compiled once; it fills defaults."""
    schema = stage_config.load_schema()
    finetune = schema["$defs"]["finetune"]["properties"]
    sub = {"$defs": schema["$defs"], "type": "object",
           "properties": {"name": {"type": "string"}, "method": {"type": "string"},
                          **{k: finetune[k] for k in HPARAMS + RUNTIME}}}
    return stage_config.FillingValidator(sub)


# the loader's workers when finetune.num_workers is null: PIL decoding feeds ~130-190 images/s per
# core (README "Keeping the GPU fed", bench/loader.py), ~12 cores per GPU at FLYP's 1,600 images/s;
# decode: device leaves the workers only file reads, and on the CPU they would compete with training
CPU_DECODE_WORKERS, FEW_WORKERS = 12, 2


def loader_workers(cfg: dict) -> int:
    """The data-loader workers of a run configuration or finetune section: its `num_workers`, or
    when null the default its `decode` and `device` call for."""
    if cfg.get("num_workers") is not None:
        return cfg["num_workers"]
    cpu_decoding = cfg.get("decode", "cpu") == "cpu" and cfg.get("device", "auto") != "cpu"
    return CPU_DECODE_WORKERS if cpu_decoding else FEW_WORKERS


def run_config(finetune: dict, name: str) -> dict:
    """The flat configuration of run `name` of an experiment's (validated) finetune section: its
    base method and every hyper-parameter, as a dict (the Snakefile's job parameter)."""
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
    if "num_workers" in cfg:   # resolved here so that the job's parameters and its request agree
        cfg["num_workers"] = loader_workers(cfg)
    return cfg


def steps_per_epoch(n_images: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps of one epoch: DistributedSampler pads to ceil(n / W) per rank, drop_last batches."""
    return math.ceil(n_images / world_size) // (batch_size // world_size)


def check_schedule(cfg: RunConfig, n_images: int, world_size: int = 1) -> int:
    """The run's total steps; FinetuneConfigError if the batch or the warm-up does not fit the data.

    A warm-up as long as the run keeps the learning rate below its peak for the whole run (in-task
    Waterbirds at batch 512: 90 steps against the paper's ImageNet warm-up of 500).
    """
    batch, epochs, warmup = cfg.batch_size, cfg.epochs, cfg.warmup_steps
    if batch % world_size:
        raise FinetuneConfigError(f"finetune.batch_size={batch} is not divisible by the {world_size} processes")
    if n_images < batch:
        raise FinetuneConfigError(f"finetune.batch_size={batch} exceeds the {n_images} training images")
    steps = steps_per_epoch(n_images, batch, world_size)
    total = steps * epochs
    if warmup >= total:
        raise FinetuneConfigError(
            f"finetune.warmup_steps={warmup} is not shorter than the run of {cfg.name}: {n_images} training "
            f"images / batch {batch} = {steps} steps per epoch x {epochs} epochs = {total} steps; "
            f"use e.g. warmup_steps: {total // 10}")
    return total


def check(finetune: dict, where: str = "finetune") -> None:
    """Raise FinetuneConfigError naming the key if a method, a variant's base method or wiseft_of is
    unknown (the registry's names: the schema does not list them)."""
    variants = finetune["variants"]
    for name, variant in variants.items():
        if name in METHODS or name in EVAL_ONLY:
            raise FinetuneConfigError(f"{where}.variants.{name}: a variant cannot reuse a method's name")
        base = METHODS.get(variant["method"])
        if base is None or not base.trains:
            trained = sorted(m for m, b in METHODS.items() if b.trains)
            raise FinetuneConfigError(f"{where}.variants.{name}.method: {variant['method']!r} is not a method "
                                      f"that trains; known: {trained}")
    for name in finetune["methods"]:
        if name not in METHODS and name not in variants and name not in EVAL_ONLY:
            raise FinetuneConfigError(f"{where}.methods: unknown method {name!r}; known: {sorted(METHODS)}, "
                                      f"{list(EVAL_ONLY)} and the variants {sorted(variants)}")
    of = finetune["wiseft_of"]
    base = variants[of]["method"] if of in variants else of
    if base not in METHODS or not METHODS[base].fine_tunes:
        raise FinetuneConfigError(f"{where}.wiseft_of: {of!r} is not a fine-tuned method or variant")
