# Data sets. Real data is never downloaded implicitly: a missing folder makes `check_data`, the
# first job that reads it, fail at once with one line naming the folder and where it is published.


rule synth_world:
    output:
        dataset=directory("data/{world}/dataset"),
        pretrain_set="data/{world}/pretrain_set.npz",
    params:
        synthetic=lambda w: quoted_json(DATASETS[w.world]["synthetic"]),
    log:
        "logs/{world}/synth_world.log",
    shell:
        "python -m stages.synthetic.world --params {params.synthetic} --root {output.dataset}"
        " --pretrain-out {output.pretrain_set} > {log} 2>&1"


rule synth_source:
    output:
        [directory(f"data/{{source}}/{s}") for s in SOURCE_SETS],
    params:
        source=lambda w: quoted_json(DATASETS[w.source]["source"]),
    log:
        "logs/{source}/synth_source.log",
    shell:
        "python -m stages.synthetic.source --params {params.source} --root data/{wildcards.source} > {log} 2>&1"


def check_options(wildcards):
    d = DATASETS[wildcards.dataset]
    options = [f"--{key} {quoted_json(d[key])}" for key in ("classnames", "templates") if d[key] is not None]
    splits = stage_config.checked_splits(CONFIG, wildcards.dataset)
    return " ".join(options + [f"--splits {quoted_json(splits)}"])


rule check_data:
    input:
        # a folder this workflow writes (synthetic world, source task) is built first
        lambda w: [DATASETS[w.dataset]["root"]] if DATASETS[w.dataset]["root"] in GENERATED else [],
    output:
        "data/{dataset}/data_check.json",
    params:
        reader=lambda w: DATASETS[w.dataset]["reader"],
        root=lambda w: shlex.quote(DATASETS[w.dataset]["root"]),
        options=check_options,
    log:
        "logs/{dataset}/check_data.log",
    shell:
        # stderr goes to the terminal as well, so that the one-line reason is seen at once
        "python -m stages.datasets check --dataset {wildcards.dataset} --reader {params.reader} --root {params.root}"
        " {params.options} --out {output} 2> >(tee {log} >&2)"


# Opt-in, for users with internet: `snakemake --cores 1 data/waterbirds/download.done`.
rule download_data:
    output:
        touch("data/{dataset}/download.done"),
    params:
        url=lambda w: DATASETS[w.dataset]["url"] or "",
        sha256=lambda w: DATASETS[w.dataset]["sha256"] or "",
        dest=lambda w: str(Path(DATASETS[w.dataset]["root"]).parent),
    log:
        "logs/{dataset}/download.log",
    shell:
        "python -m stages.datasets.download --url '{params.url}' --sha256 '{params.sha256}' --dest {params.dest} > {log} 2>&1"
