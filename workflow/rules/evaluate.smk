# One job per run (experiment, method, seed) and set of targets writes one file per target,
# <folder>/<target>.json: the model is loaded and each zero-shot head built once per job (on small
# targets a job per target spent most of its time starting up: ~5 s of imports and model load
# against ~1.5 s of scoring a synthetic target). The report decides the set: eval/ holds every
# target of the experiment (its own report, `export`), eval_<t1>+<t2>/ only those a report
# section asks for (results/waterbirds: eval_waterbirds/ of the ImageNet runs), so that a report
# needs only the data sets it shows. Adding a target re-evaluates the runs, never retrains them.
# `wiseft` evaluates the `wiseft_of` run's checkpoint over the interpolation grid.
# The experiment's teacher-text table (its spurious captions, as fine-tuning reads them) gives
# every split record its spuriosity drift.

def run_checkpoint(wildcards):
    """The checkpoint a run's evaluation (or export) reads; none for zero-shot."""
    if wildcards.method == "zeroshot":
        return []
    ft = EXPERIMENTS[wildcards.experiment]["finetune"]
    source = ft["wiseft_of"] if wildcards.method == "wiseft" else wildcards.method
    # the run's owner's: another experiment's when it trains the same settings (finetune.smk)
    return [f"{owned_run_dir(wildcards.experiment, source, wildcards.seed)}/checkpoint.pt"]


def experiment_targets(experiment):
    return stage_config.target_roles(EXPERIMENTS[experiment])


def eval_folder(experiment, method, seed, targets=None):
    """The evaluation folder of a run that holds `targets` (None: all of the experiment's)."""
    roles = experiment_targets(experiment)
    chosen = [t for t in roles if targets is None or t in targets]
    suffix = "" if len(chosen) == len(roles) else "_" + "+".join(chosen)
    return stage_config.RUN_DIR.format(experiment=experiment, method=method, seed=seed) + f"/eval{suffix}"


def job_targets(wildcards):
    """The targets a job scores, with their roles: the experiment's (eval/), or those its folder
    names (eval_<t1>+<t2>/)."""
    roles = experiment_targets(wildcards.experiment)
    if "targets" not in wildcards.keys():
        return roles
    names = wildcards.targets.split("+")
    lost = [t for t in names if t not in roles]
    if lost:
        raise WorkflowError(f"eval_{wildcards.targets}: {lost} are not targets of experiment {wildcards.experiment}")
    return {t: role for t, role in roles.items() if t in names}


def evaluate_json(wildcards):
    """Only what an evaluation reads, so that e.g. adding a method does not re-evaluate the others."""
    e = EXPERIMENTS[wildcards.experiment]
    ft = {"precision": e["finetune"]["precision"]}   # a checkpoint's own precision wins
    if wildcards.method == "wiseft":
        ft.update({k: e["finetune"][k] for k in ("wiseft_alphas", "wiseft_alpha", "wiseft_of")})
    targets = [{"target": t, "role": role, "reader": DATASETS[t]["reader"], "root": DATASETS[t]["root"],
                "splits": DATASETS[t]["splits"] or list(EVAL_SPLITS[DATASETS[t]["reader"]]),
                "data_check": data_check(t)}
               for t, role in job_targets(wildcards).items()]
    cfg = {"experiment": wildcards.experiment, "targets": targets, "model": e["model"],
           "embeddings": stage_config.TEACHER_TEXT.format(experiment=wildcards.experiment),
           "evaluate": {k: e["evaluate"][k] for k in ("batch_size", "device", "num_workers")}, "finetune": ft}
    return quoted_json(cfg)


rule evaluate:
    input:
        data_checks=lambda w: [data_check(t) for t in job_targets(w)],
        model=model_input,
        checkpoint=run_checkpoint,
        embeddings=stage_config.TEACHER_TEXT,
    output:
        # a folder: the targets are the experiment's (a rule's outputs cannot depend on a wildcard)
        directory(f"{stage_config.RUN_DIR}/eval"),
    params:
        cfg=evaluate_json,
        checkpoint=lambda w, input: f"--checkpoint {input.checkpoint}" if input.checkpoint else "",
        wiseft=lambda w: "--wiseft" if w.method == "wiseft" else "",
    # the loader's workers and the scoring process (stages.plan.resources): one CPU for the tiny
    # synthetic models, which load in the scoring process beside other jobs
    threads: lambda w: request("evaluate", w).cpus
    resources:
        gpu=lambda w: request("evaluate", w).gpus,
        mem_mb=lambda w: request("evaluate", w).mem_mb,
        runtime=lambda w: request("evaluate", w).runtime_min,
    log:
        "logs/{experiment}/evaluate_{method}_seed{seed}.log",
    shell:
        # torch takes its thread count from OMP_NUM_THREADS: as many as Snakemake granted
        "OMP_NUM_THREADS={threads} python -m stages.evaluate --config {params.cfg}"
        " --method {wildcards.method} --seed {wildcards.seed} {params.checkpoint} {params.wiseft}"
        " --out-dir {output} > {log} 2>&1"


# the same job on the targets a report section asks for, when they are not all the experiment's
use rule evaluate as evaluate_targets with:
    output:
        directory(f"{stage_config.RUN_DIR}/eval_{{targets}}"),
    wildcard_constraints:
        targets=r"(?:{0})(?:\+(?:{0}))*".format(alternatives(DATASETS)),
    log:
        "logs/{experiment}/evaluate_{method}_seed{seed}_{targets}.log",
