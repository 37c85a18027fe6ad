# Worst-group evaluation of every run; `wiseft` evaluates the `wiseft_of` run's checkpoint over
# the interpolation grid.


def run_checkpoint(wildcards):
    if wildcards.method == "zeroshot":
        return []
    source = ds(wildcards)["finetune"]["wiseft_of"] if wildcards.method == "wiseft" else wildcards.method
    return [f"results/runs/{wildcards.dataset}/{source}/seed{wildcards.seed}/checkpoint.pt"]


rule evaluate:
    input:
        data_check="data/{dataset}/data_check.json",
        model=model_input,
        checkpoint=run_checkpoint,
    output:
        "results/runs/{dataset}/{method}/seed{seed}/metrics.json",
    params:
        cfg=dataset_json,
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
