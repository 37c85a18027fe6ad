"""The fine-tuning run: FLYP or cross-entropy, optionally with StarFT's regulariser (docs/method.md).

`train` is the entry: given a validated run configuration, it sets up the process group, builds the run
(module `setup`), resumes it (module `checkpoint`), makes the linear probe its head (module
`linear_probe`: read from the `probe` rule's file, or fitted here without one) and fine-tunes
(module `loop`). The loss of one step is in module `step`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from . import distributed
from .runs import FinetuneConfigError, RunConfig, check_schedule
from ..common.io import sha256_file
from .checkpoint import finish, load_resume
from .linear_probe import fit_linear_probe
from .loop import fine_tune
from .selection import Selection
from .setup import open_split, prepare
from .tracking import check_installed


def train(dataset_cfg: dict, cfg: RunConfig, seed: int, embeddings: str | Path, out_dir: str | Path,
          progress: bool = True, probe: str | Path | None = None, keep_resume: bool = False,
          on_epoch: Callable[[int], None] | None = None) -> dict:
    """Run one fine-tuning run; write out_dir/checkpoint.pt and out_dir/train_log.csv.

    `dataset_cfg` is the experiment's training job (stages.config.train_job), `cfg` the run's
    validated configuration (RunConfig.from_dict). `probe`: the linear probe's file (lp, lpft; the
    `probe` rule's output); without it the run fits the probe itself. `keep_resume`: leave
    resume.pt beside the checkpoint (checkpoint.finish). `on_epoch(epochs done)`: called after
    each epoch's resume.pt is written (loop.fine_tune). Under torchrun every process calls this;
    rank 0 writes the files.
    """
    ctx = distributed.setup(cfg.device)
    try:
        return _train(dataset_cfg, cfg, seed, Path(embeddings), Path(out_dir), progress, ctx, probe, keep_resume,
                      on_epoch)
    finally:
        distributed.teardown(ctx)


def _train(dataset_cfg: dict, cfg: RunConfig, seed: int, embeddings: Path, out_dir: Path, progress: bool,
           ctx: distributed.Context, probe=None, keep_resume=False, on_epoch=None) -> dict:
    method = cfg.base
    if method.fine_tunes:
        check_installed(cfg.track)   # before any model: a tracker the config names must be there
    train_set = open_split(dataset_cfg, cfg.train_split)   # its layout checked before any model
    if cfg.select == "val_worst_group" and not train_set.group_names:
        raise FinetuneConfigError(f"finetune.select: val_worst_group needs a data set with groups; "
                                  f"{dataset_cfg['data']['dataset']} ({train_set.name}) has none: use select: last")
    if method.fine_tunes:
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
    if not method.fine_tunes:          # zeroshot and lp: nothing to fine-tune
        return finish(run, Selection("last"), 0, 0)
    return fine_tune(run, state, progress, on_epoch)
