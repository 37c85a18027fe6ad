# One fine-tuning job per (experiment, method, seed) on the experiment's training set; see
# docs/finetune.md. `wiseft` has no job: the evaluate rule interpolates the checkpoint of
# `finetune.wiseft_of`.
from stages.finetune import runs as ft_runs
from stages.method.registry import EVAL_ONLY, METHODS

for _name, _job in JOBS.items():
    try:
        ft_runs.check(_job["finetune"], f"experiments.{_name}.finetune")
    except ft_runs.FinetuneConfigError as e:
        raise WorkflowError(f"config key {e}") from None
    _train = DATASETS[_job["data"]["dataset"]]
    _world = _train.get("synthetic") or _train.get("source")
    if _world:
        # A synthetic training set's size is known before any job: check every run's schedule
        # now (for real data the fine-tune stage checks it before loading a model).
        for _method in _job["finetune"]["methods"]:
            if _method in EVAL_ONLY:
                continue
            _run = ft_runs.run_config(_job["finetune"], _method)
            if METHODS[_run["method"]].objective is not None:
                try:
                    ft_runs.check_schedule(_run, _world["n_train"], _job["finetune"]["processes"])
                except ft_runs.FinetuneConfigError as e:
                    raise WorkflowError(f"config key experiments.{_name}.{e}") from None


def finetune_json(wildcards):
    """The job keys a run reads (its hyper-parameters come separately, resolved)."""
    j = job(wildcards)
    return quoted_json({k: j[k] for k in ("classnames", "data", "model", "evaluate")})


def run_json(wildcards):
    """The resolved run configuration: a change of its own hyper-parameters reruns the job, a
    change of another method's or of the seed list does not."""
    return quoted_json(ft_runs.run_config(job(wildcards)["finetune"], wildcards.method))


def finetune_launcher(wildcards):
    n = job(wildcards)["finetune"]["processes"]
    return "python -m" if n == 1 else f"torchrun --standalone --nproc_per_node {n} -m"


def finetune_threads(wildcards):
    return job(wildcards)["finetune"]["threads"] or workflow.cores


rule finetune:
    input:
        data_check=lambda w: data_check(EXPERIMENTS[w.experiment]["train"]),
        embeddings="data/{experiment}/embeddings/teacher_text.parquet",
        model=model_input,
    output:
        checkpoint="results/runs/{experiment}/{method}/seed{seed}/checkpoint.pt",
        log="results/runs/{experiment}/{method}/seed{seed}/train_log.csv",
    wildcard_constraints:
        method="(?!wiseft$)[a-z][a-z0-9_]*",
    params:
        cfg=finetune_json,
        run=run_json,
        launcher=finetune_launcher,
        out_dir=lambda w: f"results/runs/{w.experiment}/{w.method}/seed{w.seed}",
    threads: finetune_threads
    resources:
        gpu=lambda w: 0 if job(w)["finetune"]["device"] == "cpu" else job(w)["finetune"]["processes"],
    log:
        "logs/{experiment}/finetune_{method}_seed{seed}.log",
    shell:
        # An interrupted job leaves results/runs/.../resume.pt (the last finished epoch): the rerun
        # continues from it.
        "{params.launcher} stages.finetune --dataset-config {params.cfg} --run-config {params.run}"
        " --method {wildcards.method} --seed {wildcards.seed} --embeddings {input.embeddings}"
        " --out-dir {params.out_dir} --set threads={threads} > {log} 2>&1"
