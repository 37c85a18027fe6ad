"""Command line of the fine-tune stage.

    python -m stages.finetune --config config/synthbirds.yaml --experiment synthworld --method starft --seed 0
    python -m stages.finetune ... --set lambda=2 --set epochs=3        # override hyper-parameters
    torchrun --nproc_per_node 4 -m stages.finetune ...                 # one run on 4 GPUs

Snakemake passes the experiment's training job (stages.config.train_job) as JSON
(`--dataset-config`) and the resolved run configuration (`--run-config`) instead of a config file.
The run configuration, with the `--set` overrides, is validated once here (RunConfig.from_dict).
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from .. import config as stage_config
from .runs import HPARAMS, RUNTIME, FinetuneConfigError, RunConfig, run_config


def parse_sets(items: list[str]) -> dict:
    """`--set KEY=VALUE` overrides, values parsed as YAML (checked against the schema by the caller)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in HPARAMS + RUNTIME:
            raise FinetuneConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(HPARAMS + RUNTIME)}")
        out[key] = yaml.safe_load(value)
    return out


def main(argv=None) -> None:
    """The command line: fine-tune one run (method, seed) of an experiment and write its checkpoint
    and log; the errors a user can fix end it with one line."""
    p = argparse.ArgumentParser(prog="python -m stages.finetune",
                                description="Fine-tune CLIP with one method (FLYP/CE, StarFT, baselines).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset-config", help="JSON of an experiment's training job (stages.config.train_job)")
    src.add_argument("--config", nargs="+", help="config YAML file(s); with --experiment")
    p.add_argument("--experiment", help="experiment name in --config (also names the default paths)")
    p.add_argument("--method", required=True, help="a method of finetune.methods or a key of finetune.variants")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--run-config", help="JSON of the resolved run config (default: from the dataset config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a finetune key")
    p.add_argument("--embeddings", help=f"teacher text embeddings (default {stage_config.TEACHER_TEXT})")
    p.add_argument("--out-dir", help=f"default {stage_config.RUN_DIR}")
    p.add_argument("--probe", help="lp, lpft: the linear probe's file (the `probe` rule's output); default: fit it here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--keep-resume", action="store_true",
                   help="leave resume.pt beside the checkpoint (the workflow removes it once the job succeeded)")
    a = p.parse_args(argv)

    from .train import train   # torch is imported only once the arguments parse
    from .loop import NonFiniteLossError
    from .tracking import TrackingError
    from ..datasets import DataError, DatasetConfigError
    from ..method.teacher_text import EmbeddingMismatchError
    try:
        if a.config:
            if not a.experiment:
                p.error("--config needs --experiment")
            config = stage_config.load(*a.config)
            if a.experiment not in config["experiments"]:
                raise FinetuneConfigError(f"experiment {a.experiment!r} not in {a.config} "
                                          f"(has {sorted(config['experiments'])})")
            dataset_cfg = stage_config.train_job(config, a.experiment)
        else:
            dataset_cfg = json.loads(a.dataset_config)
        cfg = json.loads(a.run_config) if a.run_config else run_config(dataset_cfg["finetune"], a.method)
        cfg = RunConfig.from_dict({**cfg, **parse_sets(a.set)})
        if (a.embeddings is None or a.out_dir is None) and not a.experiment:
            p.error("without --experiment, give --embeddings and --out-dir")
        embeddings = a.embeddings or stage_config.TEACHER_TEXT.format(experiment=a.experiment)
        out_dir = a.out_dir or stage_config.RUN_DIR.format(experiment=a.experiment, method=a.method, seed=a.seed)
        result = train(dataset_cfg, cfg, a.seed, embeddings, out_dir, progress=not a.no_progress, probe=a.probe,
                       keep_resume=a.keep_resume)
    except (FinetuneConfigError, EmbeddingMismatchError, DataError, DatasetConfigError,
            NonFiniteLossError, TrackingError, FileNotFoundError, stage_config.ConfigError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {result['checkpoint']} ({result['epochs']} epochs, {result['steps']} steps)")


if __name__ == "__main__":
    main()
