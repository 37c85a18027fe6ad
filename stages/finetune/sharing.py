"""Which experiment owns each training run: a run is its settings, not the experiment that asks.

Two experiments that ask for the same run (same training data, teacher, teacher-text table,
resolved hyper-parameters and seed) share one fine-tuning job and one checkpoint: the first
experiment in config order that asks for it owns it (results/runs/<owner>/<method>/seed<s>/), and
the others evaluate that checkpoint with their own evaluation settings. The paper config's
imagenet_ablation asks again for six of imagenet's seed-0 runs; without this each would be
trained twice. The linear probe of lp and LP-FT is shared the same way (`probe_owners`).

Free of torch, so that the Snakefile can compute the owners while it builds the DAG.
"""

from __future__ import annotations

import json

from .. import config as stage_config
from ..method.registry import EVAL_ONLY, METHODS
from . import probe_config as ft_probe
from .runs import RunConfig, run_config

# Run-time keys of a run that still change its result: the splits it trains and selects on.
# The other run-time keys (device, workers, processes, track, ...) only say how to run it.
RESULT_RUNTIME = ("train_split", "val_split")


def trained_runs(experiment: dict) -> list[str]:
    """The entries of an experiment's `finetune.methods` that have a training job (not zero-shot,
    not wiseft, which reads another run's checkpoint)."""
    ft = experiment["finetune"]
    out = []
    for name in ft["methods"]:
        if name in EVAL_ONLY:
            continue
        base = (ft["variants"].get(name) or {}).get("method", name)
        if METHODS[base].trains:
            out.append(name)
    return out


def _teacher(config: dict, job: dict) -> dict:
    """What a run reads besides its own settings: the training set as the stages resolve it, the
    teacher, and the teacher-text table's inputs (whose pools, which types)."""
    experiments = config["experiments"]
    return {"data": job["data"], "classnames": job["classnames"], "superclasses": job.get("superclasses"),
            "templates": job["evaluate"]["templates"], "model": job["model"],
            "pools": stage_config.pools_experiment(experiments, job["experiment"]),
            "types": sorted(job["describe"]["types"])}


def run_identity(config: dict, job: dict, method: str, seed: int) -> str:
    """The settings that determine run (`method`, `seed`) of training job `job`
    (stage_config.train_job) as canonical JSON: equal strings, equal checkpoints."""
    run = RunConfig.from_dict(run_config(job["finetune"], method))
    settings = {"name": run.name, "method": run.method, **run.hparams(),
                **{k: getattr(run, k) for k in RESULT_RUNTIME}}
    return json.dumps({**_teacher(config, job), "run": settings, "seed": seed}, sort_keys=True)


def run_owners(config: dict, jobs: dict[str, dict] | None = None) -> dict[tuple[str, str, int], str]:
    """(experiment, method, seed) -> the experiment that trains that run, for every run with a
    training job of the validated `config`: the first experiment in config order with a run of
    the same identity (`run_identity`), most often the experiment itself. `jobs`: the experiments'
    train_job, when the caller has them."""
    jobs = jobs or {name: stage_config.train_job(config, name) for name in config["experiments"]}
    first: dict[str, str] = {}
    owners = {}
    for name, experiment in config["experiments"].items():
        for method in trained_runs(experiment):
            for seed in experiment["finetune"]["seeds"]:
                identity = run_identity(config, jobs[name], method, seed)
                owners[(name, method, seed)] = first.setdefault(identity, name)
    return owners


def probe_identity(config: dict, job: dict, run_cfg: dict) -> str:
    """The settings that determine the linear probe run `run_cfg` of job `job` reads."""
    teacher = {k: v for k, v in _teacher(config, job).items() if k not in ("pools", "types")}
    # the probe encodes the original images, not the training split's resized copy
    teacher["data"] = {k: v for k, v in teacher["data"].items() if k != "resized_copy"}
    return json.dumps({**teacher, "probe": ft_probe.probe_config(run_cfg)}, sort_keys=True)


def probe_owners(config: dict, jobs: dict[str, dict] | None = None) -> dict[tuple[str, str], str]:
    """(experiment, probe id) -> the experiment whose probe job fits that probe: the first in
    config order with an lp/lpft run whose probe has the same identity (`probe_identity`); the
    probe reads the teacher and the training split, not the pools."""
    jobs = jobs or {name: stage_config.train_job(config, name) for name in config["experiments"]}
    first: dict[str, str] = {}
    owners = {}
    for name, experiment in config["experiments"].items():
        for method in trained_runs(experiment):
            run = run_config(experiment["finetune"], method)
            if METHODS[run["method"]].linear_probe:
                owners[(name, ft_probe.probe_id(run))] = first.setdefault(
                    probe_identity(config, jobs[name], run), name)
    return owners


def shared_runs(owners: dict[tuple[str, str, int], str], experiment: str) -> dict[str, dict[str, list[int]]]:
    """The runs of `experiment` that another experiment trains: {owner: {method: [seeds]}}."""
    out: dict[str, dict[str, list[int]]] = {}
    for (name, method, seed), owner in owners.items():
        if name == experiment and owner != name:
            out.setdefault(owner, {}).setdefault(method, []).append(seed)
    return out
