"""Command line of the fine-tune stage.

    python -m stages.finetune --config config/synthbirds.yaml --experiment synthworld --method starft --seed 0
    python -m stages.finetune ... --set lambda=2 --set epochs=3        # override hyper-parameters
    torchrun --nproc_per_node 4 -m stages.finetune ...                 # one run on 4 GPUs

Snakemake passes the experiment's training job (stages.config.train_job) as JSON
(`--dataset-config`) and the resolved run configuration (`--run-config`) instead of a config file.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from .. import config as stage_config
from .runs import HPARAMS, RUNTIME, FinetuneConfigError, run_config, validate_run_config


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
    p.add_argument("--embeddings", help="teacher text embeddings (default data/{experiment}/embeddings/teacher_text.parquet)")
    p.add_argument("--out-dir", help="default results/runs/{experiment}/{method}/seed{seed}")
    p.add_argument("--probe", help="lp, lpft: the linear probe's file (the `probe` rule's output); default: fit it here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--keep-resume", action="store_true",
                   help="leave resume.pt beside the checkpoint (the workflow removes it once the job succeeded)")
    a = p.parse_args(argv)

    from .train import train   # torch is imported only once the arguments parse
    from .loop import NonFiniteLossError
    from ..datasets.waterbirds import DataError
    from ..datasets import DatasetConfigError, DatasetLayoutError
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
        cfg.update(parse_sets(a.set))
        validate_run_config(cfg)
        if (a.embeddings is None or a.out_dir is None) and not a.experiment:
            p.error("without --experiment, give --embeddings and --out-dir")
        embeddings = a.embeddings or f"data/{a.experiment}/embeddings/teacher_text.parquet"
        out_dir = a.out_dir or f"results/runs/{a.experiment}/{a.method}/seed{a.seed}"
        result = train(dataset_cfg, cfg, a.seed, embeddings, out_dir, progress=not a.no_progress, probe=a.probe,
                       keep_resume=a.keep_resume)
    except (FinetuneConfigError, EmbeddingMismatchError, DataError, DatasetLayoutError, DatasetConfigError,
            NonFiniteLossError, FileNotFoundError, stage_config.ConfigError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {result['checkpoint']} ({result['epochs']} epochs, {result['steps']} steps)")


if __name__ == "__main__":
    main()
