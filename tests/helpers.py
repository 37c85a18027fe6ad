"""Shared fixtures of the fine-tuning tests: the package's toy inputs (stages.toys: a tiny
open_clip model, a tiny Waterbirds-layout data set and spurious pools, all written to a temporary
folder) and a run stopped after its first epoch."""

from __future__ import annotations

from stages.finetune.runs import RunConfig, run_config
from stages.toys import (  # noqa: F401  (re-exported for the test modules)
    CLASSNAMES,
    COLORS,
    POOLS,
    TEMPLATES,
    TINY_MODEL_CFG,
    config,
    dataset_config,
    eval_config,
    make_dataset,
    make_pools,
    make_tiny_clip,
    tiny_world,
)


def run_cfg(finetune: dict, method: str, **overrides) -> RunConfig:
    """The validated configuration of run `method` of a finetune section, with `overrides` (config
    keys: `**{"lambda": 2}`)."""
    return RunConfig.from_dict({**run_config(finetune, method), **overrides})


def stop_after_first_epoch(epochs_done: int) -> None:
    """A fine-tuning `on_epoch` hook: the run is killed once its first resume.pt is written."""
    raise KeyboardInterrupt


def interrupt_after_first_epoch(go, method, out, **overrides):
    """Run `method` (go(method, out, on_epoch=..., **overrides)) until its first resume.pt is
    written, then stop it as a kill would."""
    import pytest

    with pytest.raises(KeyboardInterrupt):
        go(method, out, on_epoch=stop_after_first_epoch, **overrides)
    assert (out / "resume.pt").exists()
