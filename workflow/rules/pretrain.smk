# A synthetic world's tiny CLIP, pre-trained on CPU and saved as an open_clip local-dir: model;
# experiments name it as `model: {name: local-dir:data/<world>/clip}`.


rule pretrain:
    input:
        stage_config.WORLD_PRETRAIN_SET,
    output:
        directory(stage_config.WORLD_CLIP),
    params:
        # only what pre-training reads: a change of e.g. the fine-tuning methods must not retrain
        cfg=lambda w: quoted_json({"seed": DATASETS[w.world]["synthetic"]["seed"],
                                   "data": {"synthetic": DATASETS[w.world]["synthetic"]},
                                   "pretrain": {k: v for k, v in DATASETS[w.world]["pretrain"].items()
                                                if k != "threads"}}),
    threads: lambda w: DATASETS[w.world]["pretrain"]["threads"] or workflow.cores
    log:
        "logs/{world}/pretrain.log",
    shell:
        # torch takes its thread count from OMP_NUM_THREADS: as many as Snakemake granted
        "OMP_NUM_THREADS={threads} python -m stages.pretrain --dataset-config {params.cfg} --pretrain-set {input} --out {output} > {log} 2>&1"
