"""Which linear probe a run reads: the keys that determine it and the file that holds it.

The probe of lp and LP-FT (module `probe`) depends on the teacher, the training split and
the L2 grid, not on the seed or on LP-FT's fine-tuning hyper-parameters: one probe job per
experiment and probe configuration serves every seed of every lp/lpft run (and variant) that
agrees on `PROBE_KEYS`. Free of torch, so that the Snakefile can name the probe's file while it
builds the DAG.
"""

from __future__ import annotations

import hashlib
import json

# what the probe's result depends on (the teacher and its inputs are the experiment's)
PROBE_KEYS = ("lp_l2_grid", "precision", "train_split")
# what only says how to compute it
PROBE_RUNTIME = ("device", "num_workers", "threads", "batch_size")
# the probe of an experiment's probe configuration (rule probe; {probe}: probe_id)
PROBE_PATH = "data/{experiment}/probe/{probe}/probe.pt"


def probe_config(run_cfg: dict) -> dict:
    """The probe-determining keys of a resolved run configuration (stages.finetune.runs.run_config)."""
    return {k: run_cfg[k] for k in PROBE_KEYS if k in run_cfg}


def probe_id(run_cfg: dict) -> str:
    """A short name of the probe configuration: the first 10 hex digits of its JSON's sha256."""
    text = json.dumps(probe_config(run_cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def probe_path(experiment: str, run_cfg: dict) -> str:
    """The file of the probe that run `run_cfg` of `experiment` reads."""
    return PROBE_PATH.format(experiment=experiment, probe=probe_id(run_cfg))


def probe_job_config(finetune: dict, run_cfg: dict) -> dict:
    """The configuration a probe job runs with: the probe's keys of `run_cfg` and the experiment's
    run-time keys (encoding batch, workers, device), as a run configuration of method lp."""
    cfg = {k: finetune[k] for k in PROBE_RUNTIME if k in finetune}
    cfg.update(probe_config(run_cfg))
    cfg.update(name="probe", method="lp")
    return cfg
