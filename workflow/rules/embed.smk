# The frozen teacher's text embeddings of the training set's class prompts, the FLYP captions and
# every spurious caption (each pool template filled with each class name), fingerprinted by the
# teacher.


def spurious_pools(wildcards, input):
    """The pool of every type in the describe job's folder."""
    return " ".join(f"{input.pools}/{t}.descriptions.parquet" for t in job(wildcards)["describe"]["types"])


def embed_json(wildcards):
    """Only what the embeddings depend on, so that other config changes do not re-embed."""
    j = job(wildcards)
    ft = {k: j["finetune"][k] for k in ("caption_template", "variants", "device", "threads")}
    cfg = {"classnames": j["classnames"], "model": j["model"], "evaluate": {"templates": j["evaluate"]["templates"]},
           "finetune": ft}
    return quoted_json(cfg)


def uses_gpu(wildcards, device):
    return 0 if device == "cpu" or model_input(wildcards) else 1


rule embed:
    input:
        # another experiment's when describe.pools_of says so
        pools=lambda w: stage_config.POOLS.format(experiment=stage_config.pools_experiment(EXPERIMENTS, w.experiment)),
        model=model_input,
    output:
        stage_config.TEACHER_TEXT,
    params:
        cfg=embed_json,
        pools=spurious_pools,
    threads: 1
    resources:
        gpu=lambda w: request("embed", w).gpus,
        mem_mb=lambda w: request("embed", w).mem_mb,
        runtime=lambda w: request("embed", w).runtime_min,
    log:
        "logs/{experiment}/embed.log",
    shell:
        "OMP_NUM_THREADS={threads} python -m stages.embed --dataset-config {params.cfg} --pools {params.pools}"
        " --out {output} > {log} 2>&1"
