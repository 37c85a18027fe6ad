# Worst-group evaluation of every run; `wiseft` evaluates the `wiseft_of` run's checkpoint over
# the interpolation grid.


def run_checkpoint(wildcards):
    if wildcards.method == "zeroshot":
        return []
    source = ds(wildcards)["finetune"]["wiseft_of"] if wildcards.method == "wiseft" else wildcards.method
    return [f"results/runs/{wildcards.dataset}/{source}/seed{wildcards.seed}/checkpoint.pt"]


def evaluate_json(wildcards):
    """Only what an evaluation reads, so that e.g. adding a method does not re-evaluate the others."""
    d = ds(wildcards)
    cfg = {k: d[k] for k in ("classnames", "model", "evaluate")}
    cfg["data"] = {"root": d["data"]["root"]}
    cfg["finetune"] = {"precision": d["finetune"]["precision"]}   # a checkpoint's own precision wins
    if wildcards.method == "wiseft":
        cfg["finetune"].update({k: d["finetune"][k] for k in ("wiseft_alphas", "wiseft_alpha", "wiseft_of")})
    return quoted_json(cfg)


rule evaluate:
    input:
        data_check="data/{dataset}/data_check.json",
        model=model_input,
        checkpoint=run_checkpoint,
    output:
        "results/runs/{dataset}/{method}/seed{seed}/metrics.json",
    params:
        cfg=evaluate_json,
        checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
        wiseft=lambda w: "--wiseft" if w.method == "wiseft" else "",
    resources:
        gpu=lambda w: 0 if is_synthetic(w.dataset) else 1,
    log:
        "logs/{dataset}/evaluate_{method}_seed{seed}.log",
    shell:
        "python -m stages.evaluate --dataset-config {params.cfg} --data-check {input.data_check}"
        " --method {wildcards.method} --seed {wildcards.seed} {params.checkpoint} {params.wiseft}"
        " --out {output} > {log} 2>&1"
