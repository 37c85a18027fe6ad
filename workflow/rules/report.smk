# The directory target a user types: `snakemake --cores N results/<dataset>`.


def report_methods(dataset):
    ft = DATASETS[dataset]["finetune"]
    methods = ["zeroshot"] + ft["methods"]
    if ft["wiseft_of"] in methods and ft["wiseft_of"] != "zeroshot":
        methods.append("wiseft")
    return list(dict.fromkeys(methods))


def report_metrics(wildcards):
    seeds = ds(wildcards)["finetune"]["seeds"]
    return [f"results/runs/{wildcards.dataset}/{m}/seed{s}/metrics.json"
            for m in report_methods(wildcards.dataset) for s in seeds]


def report_category(wildcards):
    """Figures and tables apart in `snakemake --report` (the pattern's wildcard says which)."""
    return "Figures" if "figure" in wildcards.keys() else "Tables"


report: "../report/workflow.rst"


rule report:
    input:
        metrics=report_metrics,
        model=model_input,
    output:
        # `snakemake --report report.html results/<dataset>` shows these with their captions
        report(directory("results/{dataset}"), patterns=["{figure}.png", "{table}.csv"],
               caption="../report/results.rst", category="{dataset}", subcategory=report_category),
    params:
        cfg=dataset_json,
        pretrain=lambda w: f"--pretrain-report data/{w.dataset}/clip/pretrain_report.json" if is_synthetic(w.dataset) else "",
    log:
        "logs/{dataset}/report.log",
    shell:
        "python -m stages.report --dataset {wildcards.dataset} --dataset-config {params.cfg}"
        " --metrics {input.metrics} {params.pretrain} --out {output} > {log} 2>&1"
