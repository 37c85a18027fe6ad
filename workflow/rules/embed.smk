# The frozen teacher's text embeddings of the class prompts, the FLYP captions and every spurious
# caption (each pool template filled with each class name), fingerprinted by the teacher.


def spurious_pools(wildcards, input):
    """The pool of every type in the describe job's folder."""
    return " ".join(f"{input.pools}/{t}.descriptions.parquet" for t in ds(wildcards)["describe"]["types"])


def embed_json(wildcards):
    """Only what the embeddings depend on, so that other config changes do not re-embed."""
    d = ds(wildcards)
    ft = {k: d["finetune"][k] for k in ("caption_template", "variants", "device", "threads")}
    cfg = {"classnames": d["classnames"], "model": d["model"], "evaluate": {"templates": d["evaluate"]["templates"]},
           "finetune": ft}
    return quoted_json(cfg)


rule embed:
    input:
        pools="data/{dataset}/pools",
        model=model_input,
    output:
        "data/{dataset}/embeddings/teacher_text.parquet",
    params:
        cfg=embed_json,
        pools=spurious_pools,
    threads: 1
    resources:
        gpu=lambda w: 0 if ds(w)["finetune"]["device"] == "cpu" or is_synthetic(w.dataset) else 1,
    log:
        "logs/{dataset}/embed.log",
    shell:
        "python -m stages.embed --dataset-config {params.cfg} --pools {params.pools} --out {output} > {log} 2>&1"
