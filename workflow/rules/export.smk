# A run exported for open_clip: `snakemake results/runs/<experiment>/<method>/seed<s>/export` writes a
# folder that `open_clip.create_model_and_transforms("local-dir:<folder>")` loads, with a model card
# holding the run's metrics (so the run is evaluated first). `wiseft` is exported at
# `finetune.wiseft_alpha` from the `wiseft_of` checkpoint (run_checkpoint, evaluate.smk).
# `results/runs/<experiment>/export.done` exports every fine-tuned run of the experiment and lists
# the folders. Zero-shot has nothing of its own to export: its model is the teacher.


def export_json(wildcards):
    """What the export reads. Only WiSE-FT computes anything (the zero-shot head mixed into a linear
    head): it runs on the evaluation's device so that its head is the one evaluation scored."""
    e, wiseft = EXPERIMENTS[wildcards.experiment], wildcards.method == "wiseft"
    cfg = {"experiment": wildcards.experiment, "model": e["model"],
           "device": e["evaluate"]["device"] if wiseft else "cpu",
           "data": {"dataset": e["train"], "reader": DATASETS[e["train"]]["reader"]},
           "finetune": {k: e["finetune"][k] for k in ("wiseft_alpha", "wiseft_of")} if wiseft else {}}
    return quoted_json(cfg)


def experiment_exports(wildcards):
    e = EXPERIMENTS[wildcards.experiment]
    return [stage_config.RUN_DIR.format(experiment=wildcards.experiment, method=m, seed=s) + "/export"
            for m in stage_config.report_methods(e) if m != "zeroshot" for s in stage_config.run_seeds(e, m)]


rule export:
    input:
        checkpoint=run_checkpoint,
        model=model_input,
        data_check=lambda w: data_check(EXPERIMENTS[w.experiment]["train"]),
        eval=f"{stage_config.RUN_DIR}/eval",
    output:
        directory(f"{stage_config.RUN_DIR}/export"),
    wildcard_constraints:
        # the lookahead sees the rest of the path ("zeroshot/seed0/..."), hence the slash
        method="(?!zeroshot/)[a-z][a-z0-9_]*",
    params:
        cfg=export_json,
    threads: 1
    resources:
        gpu=lambda w: uses_gpu(w, EXPERIMENTS[w.experiment]["evaluate"]["device"]) if w.method == "wiseft" else 0,
    log:
        "logs/{experiment}/export_{method}_seed{seed}.log",
    shell:
        "OMP_NUM_THREADS={threads} python -m stages.export --config {params.cfg} --method {wildcards.method}"
        " --seed {wildcards.seed} --checkpoint {input.checkpoint} --data-check {input.data_check}"
        " --eval-dir {input.eval} --out {output} > {log} 2>&1"


rule export_experiment:
    input:
        experiment_exports,
    output:
        "results/runs/{experiment}/export.done",
    localrule: True
    shell:
        "printf '%s\\n' {input} > {output}"
