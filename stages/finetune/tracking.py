"""Live tracking of a fine-tuning run (`finetune.track`): every training-log row (losses, lambda,
learning rate, logit scale, images/s) as it is written, and each epoch's val metrics, sent to
TensorBoard event files (`<run>/tensorboard/`: `tensorboard --logdir results/runs`), Weights &
Biases and/or MLflow.

Off (`track: []`, the default) the loop holds no tracker: none of these packages is imported and
nothing is written. Each is imported only when the config names it; one that is not installed
stops the run before its first step with one line saying what to install. Runs on the main
process only; a resumed run continues its curves from the epoch it resumes after.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

TRACKERS = {   # config name -> (module imported, what to install)
    "tensorboard": ("tensorboard", "pip install tensorboard (or pip install -e '.[track]')"),
    "wandb": ("wandb", "pip install wandb"),
    "mlflow": ("mlflow", "pip install mlflow-skinny (or mlflow)"),
}
# the log-row columns that are curves (stages.finetune.setup.LOG_COLUMNS), under train/
TRAIN_SCALARS = ("loss", "loss_ft", "regularizer", "lambda", "lr", "logit_scale", "images_per_s")
EVENTS = "tensorboard"   # the run folder's subfolder of event files


class TrackingError(RuntimeError):
    """A tracker the config names cannot start (its package is not installed)."""


def check_installed(names: list[str]) -> None:
    """Raise TrackingError naming the config key and the package of the first tracker not installed."""
    for name in names:
        module, install = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise TrackingError(f"finetune.track names {name}, but the {module} package is not installed: {install}, "
                                "or remove it from finetune.track")


def scalars(values: dict, prefix: str) -> dict[str, float]:
    """The numbers of `values` (bool, None, lists and strings left out), each under `prefix/`."""
    return {f"{prefix}/{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """The trackers of one run, fed by the loop: `row` for each training-log row, `epoch` for each
    epoch's val metrics, `close` at the end."""

    def __init__(self, sinks: list):
        self.sinks = sinks
        self.no_val: str | None = None   # why the run has no val metrics to show, once found

    def row(self, row: dict) -> None:
        """One training-log row (loop.train_epoch's) at its global step."""
        values = scalars({k: row.get(k) for k in TRAIN_SCALARS}, "train")
        self._log(values, row["step"])

    def epoch(self, epoch: int, step: int, metrics: dict | None) -> None:
        """The val metrics after `epoch` epochs (1-based; None: no val split to score), at `step`
        (the split's image count, `n`, is no curve)."""
        values = {k: v for k, v in (metrics or {}).items() if k != "n"}
        self._log({"train/epoch": float(epoch), **scalars(values, "val")}, step)

    def _log(self, values: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log(values, step)

    def close(self) -> None:
        """Flush and close every tracker (the run's curves are complete)."""
        for sink in self.sinks:
            sink.close()


class TensorBoardSink:
    """Event files in <run>/tensorboard/, written by torch's SummaryWriter."""

    def __init__(self, folder: Path, config: dict, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        if resume_step is None:
            shutil.rmtree(folder, ignore_errors=True)   # a run started afresh replaces its curves
        # a resumed run drops the events logged after the steps it resumes from (a cut epoch's): its
        # next row is at step resume_step + 1 (a row's step counts the steps done)
        self.writer = SummaryWriter(str(folder), purge_step=None if resume_step is None else resume_step + 1,
                                    flush_secs=10)
        if resume_step is None:
            self.writer.add_text("config", f"```\n{json.dumps(config, indent=1, sort_keys=True)}\n```", 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A W&B run per fine-tuning run: project = experiment, name = <method>/seed<s>, resumed by id
    (its files under <run>/wandb/; WANDB_MODE=offline keeps them there)."""

    def __init__(self, out_dir: Path, project: str, name: str, run_id: str, config: dict):
        import wandb

        self.run = wandb.init(project=project, name=name, id=run_id, dir=str(out_dir), config=config,
                              resume="allow")

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowSink:
    """An MLflow run per attempt, in the experiment named after ours, at MLflow's tracking URI
    (MLFLOW_TRACKING_URI; e.g. a file store, file:/path/mlruns)."""

    def __init__(self, project: str, name: str, config: dict):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(project)
        self.run = mlflow.start_run(run_name=name)
        # MLflow params are strings of at most a few thousand characters
        mlflow.log_params({k: json.dumps(v)[:500] for k, v in config.items()})

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def open_tracker(names: list[str], out_dir: Path, experiment: str, run_name: str, seed: int, config: dict,
                 resume_step: int | None) -> Tracker | None:
    """The trackers `names` of one run (None when none is named): its log rows and val metrics go
    to each. `resume_step`: the steps done before a resumed run continues (None: a fresh start)."""
    if not names:
        return None
    check_installed(names)
    name = f"{run_name}/seed{seed}"
    sinks = []
    for tracker in names:
        if tracker == "tensorboard":
            sinks.append(TensorBoardSink(out_dir / EVENTS, config, resume_step))
        elif tracker == "wandb":
            sinks.append(WandbSink(out_dir, experiment, name, f"{experiment}-{run_name}-seed{seed}", config))
        elif tracker == "mlflow":
            sinks.append(MLflowSink(experiment, name, config))
    return Tracker(sinks)
