# Data sets in the Waterbirds on-disk layout. Real data is never downloaded implicitly: a missing
# metadata.csv makes `check_data` fail at once with one line saying where to put it.


rule synth_world:
    output:
        dataset=directory("data/{dataset}/dataset"),
        pretrain_set="data/{dataset}/pretrain_set.npz",
    params:
        synthetic=lambda w: quoted_json(ds(w)["data"]["synthetic"]),
    log:
        "logs/{dataset}/synth_world.log",
    shell:
        "python -m stages.synthworld --params {params.synthetic} --root {output.dataset}"
        " --pretrain-out {output.pretrain_set} > {log} 2>&1"


rule check_data:
    input:
        lambda w: [ds(w)["data"]["root"]] if is_synthetic(w.dataset) else [],
    output:
        "data/{dataset}/data_check.json",
    params:
        root=lambda w: ds(w)["data"]["root"],
        classnames=lambda w: quoted_json(ds(w)["classnames"]),
    log:
        "logs/{dataset}/check_data.log",
    shell:
        # stderr goes to the terminal as well, so that the one-line reason is seen at once
        "python -m stages.data --root {params.root} --classnames {params.classnames} --out {output}"
        " 2> >(tee {log} >&2)"


# Opt-in, for users with internet: `snakemake --cores 1 data/waterbirds/download.done`.
rule download_data:
    output:
        touch("data/{dataset}/download.done"),
    params:
        url=lambda w: ds(w)["data"]["url"],
        sha256=lambda w: ds(w)["data"]["sha256"] or "",
        dest=lambda w: str(Path(ds(w)["data"]["root"]).parent),
    log:
        "logs/{dataset}/download.log",
    shell:
        "python -m stages.download --url {params.url} --sha256 '{params.sha256}' --dest {params.dest} > {log} 2>&1"
