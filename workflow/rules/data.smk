# Data sets. Real data is never downloaded implicitly: a missing folder makes `check_data`, the
# first job that reads it, fail at once with one line naming the folder and where it is published.


rule synth_world:
    output:
        dataset=directory(stage_config.WORLD_DATASET),
        pretrain_set=stage_config.WORLD_PRETRAIN_SET,
    params:
        synthetic=lambda w: quoted_json(DATASETS[w.world]["synthetic"]),
    log:
        "logs/{world}/synth_world.log",
    shell:
        "python -m stages.synthetic.world --params {params.synthetic} --root {output.dataset}"
        " --pretrain-out {output.pretrain_set} > {log} 2>&1"


rule synth_source:
    output:
        [directory(f"{stage_config.SOURCE_ROOT}/{s}") for s in SOURCE_SETS],
    params:
        source=lambda w: quoted_json(DATASETS[w.source]["source"]),
        root=lambda w: stage_config.SOURCE_ROOT.format(source=w.source),
    log:
        "logs/{source}/synth_source.log",
    shell:
        "python -m stages.synthetic.source --params {params.source} --root {params.root} > {log} 2>&1"


# The oracle pools (config/synthbirds.yaml's synthworld_oracle reads them with the describe
# stage's `file` backend): templates written from the world's own nuisance words, the control
# that tells the method apart from the quality of an LLM's pools.
rule oracle_pools:
    output:
        [f"{stage_config.ORACLE_POOLS}/{t}.txt" for t in ORACLE_TYPES],
    params:
        out=stage_config.ORACLE_POOLS,
    log:
        "logs/oracle_pools.log",
    shell:
        "python -m stages.synthetic.vocabulary --out-dir {params.out} > {log} 2>&1"


def check_options(wildcards):
    d = DATASETS[wildcards.dataset]
    # class names: the config's list, or its classnames_file as a {folder: name} mapping
    names = stage_config.class_override(CONFIG, wildcards.dataset)
    options = [f"--{key} {quoted_json(value)}" for key, value in (("classnames", names), ("templates", d["templates"]))
               if value is not None]
    splits = stage_config.checked_splits(CONFIG, wildcards.dataset)
    return " ".join(options + [f"--splits {quoted_json(splits)}"])


def check_data_options(wildcards):
    # a missing folder's error then names the rule that fetches it
    preparable = DATASETS[wildcards.dataset].get("prepare") is not None
    return check_options(wildcards) + (" --preparable" if preparable else "")


rule check_data:
    input:
        # a folder this workflow writes (synthetic world, source task) is built first
        lambda w: [DATASETS[w.dataset]["root"]] if DATASETS[w.dataset]["root"] in GENERATED else [],
    output:
        stage_config.DATA_CHECK,
    params:
        reader=lambda w: DATASETS[w.dataset]["reader"],
        root=lambda w: shlex.quote(DATASETS[w.dataset]["root"]),
        options=check_data_options,
    log:
        "logs/{dataset}/check_data.log",
    shell:
        # stderr goes to the terminal as well, so that the one-line reason is seen at once
        "python -m stages.datasets check --dataset {wildcards.dataset} --reader {params.reader} --root {params.root}"
        " {params.options} --out {output} 2> >(tee {log} >&2)"


# Opt-in, for users with internet (README "The paper's tables"): one data set with
# `snakemake --cores 1 data/<dataset>/prepared`, all of them with `snakemake --cores 4 prepare_data_all`.
# Fetched (resumable, checked), laid out as its reader reads it and data-checked before it is
# renamed to its root (stages/datasets/prepare); check_data never asks for it.
PREPARED = [name for name, d in DATASETS.items() if d.get("prepare") is not None]


rule prepare_data:
    output:
        stage_config.PREPARED,
    wildcard_constraints:
        dataset=alternatives(PREPARED),
    params:
        reader=lambda w: DATASETS[w.dataset]["reader"],
        root=lambda w: shlex.quote(DATASETS[w.dataset]["root"]),
        spec=lambda w: quoted_json(DATASETS[w.dataset]["prepare"]),
        options=check_options,
    log:
        "logs/{dataset}/prepare.log",
    shell:
        "python -m stages.datasets.prepare --dataset {wildcards.dataset} --reader {params.reader}"
        " --root {params.root} --spec {params.spec} --downloads data/downloads/{wildcards.dataset}"
        " {params.options} --out {output} 2> >(tee {log} >&2)"


rule prepare_data_all:
    input:
        [stage_config.PREPARED.format(dataset=name) for name in PREPARED],


# Opt-in (README "Keeping the GPU fed"): with `datasets.<dataset>.resized_copy` set, fine-tuning
# reads the training split from a copy with its images pre-resized, written first by
# `snakemake --cores 16 data/<dataset>/resized_train` (stages/datasets/resized.py: resumable from
# data/<dataset>/resized_train.partial, renamed when complete). Only the fine-tune stage reads it.
RESIZED = [name for name, d in DATASETS.items() if d.get("resized_copy") is not None]


rule resize_split:
    input:
        lambda w: data_check(w.dataset),
    output:
        directory(stage_config.RESIZED_COPY),
    wildcard_constraints:
        dataset=alternatives(RESIZED),
        split="[a-z0-9_]+",
    params:
        reader=lambda w: DATASETS[w.dataset]["reader"],
        root=lambda w: shlex.quote(DATASETS[w.dataset]["root"]),
        short_side=lambda w: DATASETS[w.dataset]["resized_copy"]["short_side"],
        quality=lambda w: DATASETS[w.dataset]["resized_copy"]["quality"],
    threads: workflow.cores
    log:
        "logs/{dataset}/resize_{split}.log",
    shell:
        "python -m stages.datasets.resized --reader {params.reader} --root {params.root} --split {wildcards.split}"
        " --out {output} --short-side {params.short_side} --quality {params.quality} --workers {threads}"
        " 2> >(tee {log} >&2)"
