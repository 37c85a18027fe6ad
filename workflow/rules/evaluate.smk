# Every run of an experiment on every target, one file per (run, target): adding a target
# evaluates and never retrains. `wiseft` evaluates the `wiseft_of` run's checkpoint over the
# interpolation grid.


def run_checkpoint(wildcards):
    if wildcards.method == "zeroshot":
        return []
    ft = EXPERIMENTS[wildcards.experiment]["finetune"]
    source = ft["wiseft_of"] if wildcards.method == "wiseft" else wildcards.method
    return [f"results/runs/{wildcards.experiment}/{source}/seed{wildcards.seed}/checkpoint.pt"]


def evaluate_json(wildcards):
    """Only what an evaluation reads, so that e.g. adding a method does not re-evaluate the others."""
    e, d = EXPERIMENTS[wildcards.experiment], DATASETS[wildcards.target]
    ft = {"precision": e["finetune"]["precision"]}   # a checkpoint's own precision wins
    if wildcards.method == "wiseft":
        ft.update({k: e["finetune"][k] for k in ("wiseft_alphas", "wiseft_alpha", "wiseft_of")})
    cfg = {"experiment": wildcards.experiment, "target": wildcards.target,
           "role": stage_config.target_roles(e)[wildcards.target], "reader": d["reader"], "root": d["root"],
           "splits": d["splits"] or list(EVAL_SPLITS[d["reader"]]), "model": e["model"],
           "evaluate": {k: e["evaluate"][k] for k in ("batch_size", "device", "num_workers")}, "finetune": ft}
    return quoted_json(cfg)


def check_target(wildcards):
    if wildcards.target not in stage_config.target_roles(EXPERIMENTS[wildcards.experiment]):
        raise WorkflowError(f"{wildcards.target} is not a target of experiment {wildcards.experiment} "
                            f"(experiments.{wildcards.experiment}.evaluate)")
    return data_check(wildcards.target)


rule evaluate:
    input:
        data_check=check_target,
        model=model_input,
        checkpoint=run_checkpoint,
    output:
        "results/runs/{experiment}/{method}/seed{seed}/eval/{target}.json",
    params:
        cfg=evaluate_json,
        checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
        wiseft=lambda w: "--wiseft" if w.method == "wiseft" else "",
    resources:
        gpu=lambda w: uses_gpu(w, EXPERIMENTS[w.experiment]["evaluate"]["device"]),
    log:
        "logs/{experiment}/evaluate_{method}_seed{seed}_{target}.log",
    shell:
        "python -m stages.evaluate --config {params.cfg} --data-check {input.data_check}"
        " --method {wildcards.method} --seed {wildcards.seed} {params.checkpoint} {params.wiseft}"
        " --out {output} > {log} 2>&1"
