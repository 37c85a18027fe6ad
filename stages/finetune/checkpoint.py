"""Checkpoints and resume: atomic writes (`save`), the resume file of an interrupted run
(`load_resume`) and the run's end, checkpoint.pt and train_log.csv (`finish`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from ..common.io import atomic_path
from . import distributed
from .runs import HPARAMS
from .selection import Selection
from .setup import CHECKPOINT, LOG, LOG_COLUMNS, Run


def save(path: Path, state: dict) -> None:
    """`torch.save` of `state` to `path`, atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(run: Run) -> dict | None:
    """The last epoch checkpoint of an interrupted run, if it belongs to this very run: same
    hyper-parameters, seed, teacher and inputs (pools, prompt templates, captions, data folder)."""
    path = run.resume_path
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    ours = run.cfg.as_dict()
    changed = [k for k in HPARAMS + ("method",) if ours[k] != state["config"].get(k)]
    if state["teacher"]["fingerprint"] != run.clip.identity["fingerprint"]:
        changed.append("teacher")
    if state["seed"] != run.seed:
        changed.append("seed")
    if state.get("inputs") != run.inputs:
        changed.append("inputs (spurious pools, prompt templates, captions or data folder)")
    if changed:
        print(f"{path}: from another configuration ({', '.join(changed)} differ): starting afresh", file=sys.stderr)
        return None
    return state


def finish(run: Run, selection: Selection, epochs: int, step: int) -> dict:
    """Write the checkpoint and the log (main process); drop the resume file unless
    run.keep_resume: the workflow drops it once its job has succeeded, so that a job its scheduler
    marks failed after the stage finished (a time limit reached in the job's last seconds: its
    outputs then removed) resumes at its last epoch rather than training again from the start."""
    if run.ctx.is_main:
        final = run.state(epochs, step, selection.weights(run), selected=selection.record(epochs))
        save(run.out_dir / CHECKPOINT, final)
        with atomic_path(run.out_dir / LOG) as tmp:
            pd.DataFrame(run.log, columns=list(LOG_COLUMNS)).to_csv(tmp, index=False)
        if not run.keep_resume:
            run.resume_path.unlink(missing_ok=True)
    distributed.barrier(run.ctx)
    return {"checkpoint": str(run.out_dir / CHECKPOINT), "epochs": epochs, "steps": step, "log": run.log,
            "selected": selection.record(epochs)}
