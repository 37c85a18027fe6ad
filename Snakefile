# StarFT pipeline. Targets a user types:
#   snakemake --cores 2 results/synthbirds      (synthetic world, CPU, minutes)
#   snakemake --cores 8 results/waterbirds      (real data, GPU)
# Every dataset's configuration is validated against workflow/schemas/config.schema.yaml before
# any job runs; intermediate files live under data/<dataset>/ and results/runs/<dataset>/, outside
# the directory target results/<dataset>/.
import json
import shlex
from pathlib import Path

from stages import config as stage_config

configfile: "config/synthbirds.yaml"
configfile: "config/waterbirds.yaml"

try:
    DATASETS = stage_config.validate(config)
except stage_config.ConfigError as e:
    raise WorkflowError(str(e)) from None


def ds(wildcards):
    """The validated configuration of the wildcard's dataset."""
    return DATASETS[wildcards.dataset]


def quoted_json(obj):
    """`obj` as one shell word of JSON, the way every rule hands configuration to a stage CLI.

    As a Snakemake param it also makes a job rerun exactly when what it reads changes, so each
    rule passes only the keys its stage reads.
    """
    return shlex.quote(json.dumps(obj, sort_keys=True))


def dataset_json(wildcards):
    """The whole dataset configuration (for jobs that depend on all of it, like the report)."""
    return quoted_json(ds(wildcards))


def is_synthetic(dataset):
    return "synthetic" in DATASETS[dataset]["data"]


def model_input(wildcards):
    """The teacher's files when this workflow builds them (the synthetic world's tiny CLIP)."""
    return [f"data/{wildcards.dataset}/clip"] if is_synthetic(wildcards.dataset) else []


for _name in DATASETS:
    if is_synthetic(_name):
        # The synthetic world is built by rules with fixed output paths; say so before any job.
        _expected = {"data.root": f"data/{_name}/dataset", "model.name": f"local-dir:data/{_name}/clip"}
        _actual = {"data.root": DATASETS[_name]["data"]["root"], "model.name": DATASETS[_name]["model"]["name"]}
        for _key, _value in _expected.items():
            if _actual[_key] != _value:
                raise WorkflowError(f"config key {_name}.{_key}: a synthetic dataset must use {_value!r}, got {_actual[_key]!r}")


wildcard_constraints:
    dataset="|".join(DATASETS) or "NONE",
    method="[a-z][a-z0-9_]*",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/describe.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
