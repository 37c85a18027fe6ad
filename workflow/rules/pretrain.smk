# The synthetic world's tiny CLIP, pre-trained on CPU and saved as an open_clip local-dir: model.


rule pretrain:
    input:
        "data/{dataset}/pretrain_set.npz",
    output:
        directory("data/{dataset}/clip"),
    params:
        # only what pre-training reads: a change of e.g. the fine-tuning methods must not retrain
        cfg=lambda w: quoted_json({k: ds(w)[k] for k in ("seed", "data", "pretrain")}),
    threads: workflow.cores
    log:
        "logs/{dataset}/pretrain.log",
    shell:
        # torch takes its thread count from OMP_NUM_THREADS: as many as Snakemake granted
        "OMP_NUM_THREADS={threads} python -m stages.pretrain --dataset-config {params.cfg} --pretrain-set {input} --out {output} > {log} 2>&1"
