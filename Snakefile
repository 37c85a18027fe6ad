# StarFT pipeline. Targets a user types (README "The paper's tables"):
#   snakemake --cores 2 results/synthbirds      (the protocol in the synthetic world, CPU, ~11 min)
#   snakemake --cores 2 results/synthbirds_ablation   (lambda, KL form, pool types, temperature)
#   snakemake --cores 16 results/imagenet       (the paper's protocol: fine-tune on ImageNet, evaluate on every target)
#   snakemake --cores 16 results/waterbirds     (zero-shot group shift, and the in-task setting)
# The configuration (datasets, experiments, reports) is validated against
# workflow/schemas/config.schema.yaml before any job runs. Per data set: data/<dataset>/; per
# experiment: data/<experiment>/ (pools, teacher text embeddings) and results/runs/<experiment>/
# (checkpoints, one eval/<target>.json per run and target; eval_<t1>+<t2>/ for a report section that
# shows only those targets), outside the report folder results/<name>/.
import json
import shlex
from pathlib import Path

from stages import config as stage_config
from stages import preflight
from stages.method import clip_cache
from stages.datasets import EVAL_SPLITS
from stages.synthetic.source import SETS as SOURCE_SETS
from stages.synthetic.vocabulary import ORACLE_TYPES

configfile: "config/synthbirds.yaml"
configfile: "config/paper.yaml"

try:
    CONFIG = stage_config.validate(config)
except stage_config.ConfigError as e:
    raise WorkflowError(str(e)) from None
# the teacher against open_clip's registry, so that a misspelt model fails the dry run, not a GPU
# job (stages/preflight.py; the rules preflight and preflight_describe check the rest)
if _model_problems := preflight.model_problems(CONFIG):
    raise WorkflowError("\n".join(_model_problems))
DATASETS, EXPERIMENTS, REPORTS = CONFIG["datasets"], CONFIG["experiments"], CONFIG["reports"]
# what the describe, embed and fine-tune stages read of each experiment (training set resolved)
JOBS = {name: stage_config.train_job(CONFIG, name) for name in EXPERIMENTS}
SYNTHETIC = [name for name in DATASETS if stage_config.is_synthetic(CONFIG, name)]
SOURCES = [name for name, d in DATASETS.items() if "source" in d]
GENERATED = stage_config.generated_roots(CONFIG)   # data set folders that rules write


def job(wildcards):
    """The training job of the wildcard's experiment."""
    return JOBS[wildcards.experiment]


def quoted_json(obj):
    """`obj` as one shell word of JSON, the way every rule hands configuration to a stage CLI.

    As a Snakemake param it also makes a job rerun exactly when what it reads changes, so each
    rule passes only the keys its stage reads.
    """
    return shlex.quote(json.dumps(obj, sort_keys=True))


def data_check(dataset):
    return stage_config.DATA_CHECK.format(dataset=dataset)


def model_input(wildcards):
    """The teacher's files when this workflow builds them (a synthetic world's tiny CLIP) or fetches
    them (rule fetch_clip: an open_clip registry model's weights, downloaded once, before any job
    that loads them; ancient(): fetching them again changes no result)."""
    e = EXPERIMENTS[wildcards.experiment]
    world = stage_config.synthetic_teacher(CONFIG, e)
    if world:
        return [stage_config.WORLD_CLIP.format(world=world)]
    fetched = clip_cache.fetched_marker(e["model"])
    return [ancient(fetched)] if fetched else []


def alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True)) or "NONE"


wildcard_constraints:
    dataset=alternatives(DATASETS),
    world=alternatives(SYNTHETIC),
    source=alternatives(SOURCES),
    experiment=alternatives(EXPERIMENTS),
    target=alternatives(DATASETS),
    name=alternatives(list(EXPERIMENTS) + list(REPORTS)),
    method="[a-z][a-z0-9_]*",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/describe.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"
