# One job per run (experiment, method, seed) evaluates it on every target of its experiment and
# writes one file per target, eval/<target>.json: the model is loaded once (on small targets a job
# per target spent most of its time starting up). Adding a target re-evaluates the runs, never
# retrains them. `wiseft` evaluates the `wiseft_of` run's checkpoint over the interpolation grid.


def run_checkpoint(wildcards):
    if wildcards.method == "zeroshot":
        return []
    ft = EXPERIMENTS[wildcards.experiment]["finetune"]
    source = ft["wiseft_of"] if wildcards.method == "wiseft" else wildcards.method
    return [f"results/runs/{wildcards.experiment}/{source}/seed{wildcards.seed}/checkpoint.pt"]


def experiment_targets(experiment):
    return stage_config.target_roles(EXPERIMENTS[experiment])


def evaluate_json(wildcards):
    """Only what an evaluation reads, so that e.g. adding a method does not re-evaluate the others."""
    e = EXPERIMENTS[wildcards.experiment]
    ft = {"precision": e["finetune"]["precision"]}   # a checkpoint's own precision wins
    if wildcards.method == "wiseft":
        ft.update({k: e["finetune"][k] for k in ("wiseft_alphas", "wiseft_alpha", "wiseft_of")})
    targets = [{"target": t, "role": role, "reader": DATASETS[t]["reader"], "root": DATASETS[t]["root"],
                "splits": DATASETS[t]["splits"] or list(EVAL_SPLITS[DATASETS[t]["reader"]]),
                "data_check": data_check(t)}
               for t, role in experiment_targets(wildcards.experiment).items()]
    cfg = {"experiment": wildcards.experiment, "targets": targets, "model": e["model"],
           "evaluate": {k: e["evaluate"][k] for k in ("batch_size", "device", "num_workers")}, "finetune": ft}
    return quoted_json(cfg)


rule evaluate:
    input:
        data_checks=lambda w: [data_check(t) for t in experiment_targets(w.experiment)],
        model=model_input,
        checkpoint=run_checkpoint,
    output:
        # a folder: the targets are the experiment's (a rule's outputs cannot depend on a wildcard)
        directory("results/runs/{experiment}/{method}/seed{seed}/eval"),
    params:
        cfg=evaluate_json,
        checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
        wiseft=lambda w: "--wiseft" if w.method == "wiseft" else "",
    # one CPU thread: the model runs on the GPU, or (tiny synthetic models) beside other jobs
    threads: 1
    resources:
        gpu=lambda w: uses_gpu(w, EXPERIMENTS[w.experiment]["evaluate"]["device"]),
    log:
        "logs/{experiment}/evaluate_{method}_seed{seed}.log",
    shell:
        # torch takes its thread count from OMP_NUM_THREADS: as many as Snakemake granted
        "OMP_NUM_THREADS={threads} python -m stages.evaluate --config {params.cfg}"
        " --method {wildcards.method} --seed {wildcards.seed} {params.checkpoint} {params.wiseft}"
        " --out-dir {output} > {log} 2>&1"
