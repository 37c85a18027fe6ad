# One fine-tuning job per (dataset, method, seed); see docs/finetune.md. `wiseft` has no job: the
# evaluate rule interpolates the checkpoint of `finetune.wiseft_of`.
from stages.finetune import methods as ft_methods

for _name, _cfg in DATASETS.items():
    try:
        ft_methods.check(_cfg["finetune"], f"{_name}.finetune")
    except ft_methods.FinetuneConfigError as e:
        raise WorkflowError(f"config key {e}") from None
    if is_synthetic(_name):
        # The synthetic training set's size is known before any job: check every run's schedule
        # now (for real data the fine-tune stage checks it before loading a model).
        for _method in _cfg["finetune"]["methods"]:
            if _method in ft_methods.EVAL_ONLY:
                continue
            _run = ft_methods.run_config(_cfg["finetune"], _method)
            if ft_methods.METHODS[_run["method"]].objective is not None:
                try:
                    ft_methods.check_schedule(_run, _cfg["data"]["synthetic"]["n_train"], _cfg["finetune"]["processes"])
                except ft_methods.FinetuneConfigError as e:
                    raise WorkflowError(f"config key {_name}.{e}") from None


def finetune_json(wildcards):
    """The dataset keys a run reads (its hyper-parameters come separately, resolved)."""
    d = ds(wildcards)
    cfg = {"classnames": d["classnames"], "data": {"root": d["data"]["root"]}, "model": d["model"],
           "evaluate": {"templates": d["evaluate"]["templates"]}}
    return quoted_json(cfg)


def run_json(wildcards):
    """The resolved run configuration: a change of its own hyper-parameters reruns the job, a
    change of another method's or of the seed list does not."""
    return quoted_json(ft_methods.run_config(ds(wildcards)["finetune"], wildcards.method))


def finetune_launcher(wildcards):
    n = ds(wildcards)["finetune"]["processes"]
    return "python -m" if n == 1 else f"torchrun --standalone --nproc_per_node {n} -m"


def finetune_threads(wildcards):
    return ds(wildcards)["finetune"]["threads"] or workflow.cores


rule finetune:
    input:
        data_check="data/{dataset}/data_check.json",
        embeddings="data/{dataset}/embeddings/teacher_text.parquet",
        model=model_input,
    output:
        checkpoint="results/runs/{dataset}/{method}/seed{seed}/checkpoint.pt",
        log="results/runs/{dataset}/{method}/seed{seed}/train_log.csv",
    wildcard_constraints:
        method="(?!wiseft$)[a-z][a-z0-9_]*",
    params:
        cfg=finetune_json,
        run=run_json,
        launcher=finetune_launcher,
        out_dir=lambda w: f"results/runs/{w.dataset}/{w.method}/seed{w.seed}",
    threads: finetune_threads
    resources:
        gpu=lambda w: 0 if ds(w)["finetune"]["device"] == "cpu" else ds(w)["finetune"]["processes"],
    log:
        "logs/{dataset}/finetune_{method}_seed{seed}.log",
    shell:
        # An interrupted job leaves results/runs/.../resume.pt (the last finished epoch): the rerun
        # continues from it.
        "{params.launcher} stages.finetune --dataset-config {params.cfg} --run-config {params.run}"
        " --method {wildcards.method} --seed {wildcards.seed} --embeddings {input.embeddings}"
        " --out-dir {params.out_dir} --set threads={threads} > {log} 2>&1"
