"""The fine-tuning run: FLYP or cross-entropy, optionally with StarFT's regulariser (DESIGN.md 1).

`train` is the entry: it checks the run configuration, sets up the process group, builds the run
(module `setup`), resumes it (module `checkpoint`), makes the linear probe its head (module
`linear_probe`: read from the `probe` rule's file, or fitted here without one) and fine-tunes
(module `loop`). The loss of one step is in module `step`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import distributed
from ..method.registry import METHODS
from .runs import FinetuneConfigError, check_schedule, validate_run_config
from ..common.io import sha256_file
from .checkpoint import finish, load_resume
from .linear_probe import fit_linear_probe
from .loop import fine_tune
from .selection import Selection
from .setup import open_split, prepare


def train(dataset_cfg: dict, cfg: dict, seed: int, embeddings: str | Path, out_dir: str | Path,
          progress: bool = True, probe: str | Path | None = None, keep_resume: bool = False) -> dict:
    """Run one fine-tuning run; write out_dir/checkpoint.pt and out_dir/train_log.csv.

    `cfg` is a resolved run configuration (runs.run_config), checked against the schema here.
    `probe`: the linear probe's file (lp, lpft; the `probe` rule's output); without it the run
    fits the probe itself. `keep_resume`: leave resume.pt beside the checkpoint (checkpoint.finish).
    Under torchrun every process calls this; rank 0 writes the files.
    """
    validate_run_config(cfg)
    ctx = distributed.setup(cfg.get("device", "auto"))
    try:
        return _train(dataset_cfg, cfg, seed, Path(embeddings), Path(out_dir), progress, ctx, probe, keep_resume)
    finally:
        distributed.teardown(ctx)


def _train(dataset_cfg, cfg, seed, embeddings, out_dir, progress, ctx: distributed.Context, probe=None,
           keep_resume=False) -> dict:
    method = METHODS[cfg["method"]]
    train_set = open_split(dataset_cfg, cfg.get("train_split", "train"))   # its layout checked before any model
    if cfg.get("select", "last") == "val_worst_group" and not train_set.group_names:
        raise FinetuneConfigError(f"finetune.select: val_worst_group needs a data set with groups; "
                                  f"{dataset_cfg['data']['dataset']} ({train_set.name}) has none: use select: last")
    if method.objective is not None:
        check_schedule(cfg, len(train_set.dataset), ctx.world_size)
    run = prepare(dataset_cfg, cfg, seed, embeddings, out_dir, ctx, train_set)
    run.keep_resume = keep_resume
    state = load_resume(run)
    if state is not None and method.linear_probe and probe is not None \
            and (state.get("probe") or {}).get("file_sha256") != sha256_file(probe):
        print(f"{run.resume_path}: from another linear probe than {probe}: starting afresh", file=sys.stderr)
        state = None
    if state is not None:
        run.log, run.probe = state["log"], state.get("probe")
    elif method.linear_probe:
        fit_linear_probe(run, probe)
    if method.objective is None:          # zeroshot and lp: nothing to fine-tune
        return finish(run, Selection(), 0, 0)
    return fine_tune(run, state, progress)
