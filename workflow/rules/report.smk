# The directory targets a user types: `snakemake --cores N results/<experiment>` (every table of
# one experiment) or `results/<report>` (sections of several experiments, config `reports`), and
# one table of either, `results/tables/<name>/<table>.csv` (or .tex): a copy of the report's file,
# since Snakemake forbids an output inside the report's directory output.


def report_sections(name):
    """The sections of results/<name>: an experiment's own report is one section of all its targets."""
    if name in REPORTS:
        return REPORTS[name]
    return [{"experiment": name, "title": name, "targets": None, "methods": None}]


def section_evals(section):
    """The eval folders of every run of the section's experiment, holding the section's targets
    only (evaluate.smk: the targets a report shows decide what is evaluated and which data sets
    must be present)."""
    e = EXPERIMENTS[section["experiment"]]
    methods = stage_config.report_methods(e, section["methods"])
    return [eval_folder(section["experiment"], m, s, section["targets"]) for m in methods
            for s in stage_config.run_seeds(e, m)]


def section_metrics(section):
    targets = section["targets"] or list(stage_config.target_roles(EXPERIMENTS[section["experiment"]]))
    return [f"{folder}/{t}.json" for folder in section_evals(section) for t in targets]


def section_shared(section):
    """The section's runs that another experiment trains (finetune.smk RUN_OWNERS), for the
    report's note: {owner: {method: [seeds]}}."""
    shown = set(stage_config.report_methods(EXPERIMENTS[section["experiment"]], section["methods"]))
    shared = ft_sharing.shared_runs(RUN_OWNERS, section["experiment"])
    return {owner: {m: seeds for m, seeds in runs.items() if m in shown} for owner, runs in shared.items()
            if shown & set(runs)}


def report_spec(wildcards):
    sections = [{"title": s["title"], "experiment": s["experiment"], "config": EXPERIMENTS[s["experiment"]],
                 "metrics": section_metrics(s), "shared": section_shared(s)} for s in report_sections(wildcards.name)]
    # what the protocol table reads of each target's data set (its templates: the config's, else the
    # reader's; whether this workflow generates it); only that, so that a change elsewhere in
    # `datasets` does not rerun the report
    targets = dict.fromkeys(t for s in report_sections(wildcards.name)
                            for t in s["targets"] or stage_config.target_roles(EXPERIMENTS[s["experiment"]]))
    generated = stage_config.generated_roots(CONFIG)
    datasets = {t: {"reader": DATASETS[t]["reader"], "templates": DATASETS[t]["templates"],
                    "generated": DATASETS[t]["root"] in generated} for t in targets}
    return quoted_json({"sections": sections, "datasets": datasets})


def report_teachers(wildcards):
    """The pretrain reports of the synthetic teachers, for the report's teacher note."""
    sections = report_sections(wildcards.name)
    worlds = {stage_config.synthetic_teacher(CONFIG, EXPERIMENTS[s["experiment"]]) for s in sections}
    return [stage_config.WORLD_CLIP.format(world=w) for w in sorted(worlds - {None})]


def report_pools(wildcards):
    """The pools of the synthetic experiments, for the report's readable-share note."""
    experiments = dict.fromkeys(s["experiment"] for s in report_sections(wildcards.name))
    return list(dict.fromkeys(stage_config.POOLS.format(experiment=stage_config.pools_experiment(EXPERIMENTS, e))
                              for e in experiments if JOBS[e].get("synthetic")))


def report_category(wildcards):
    """Figures and tables apart in `snakemake --report` (the pattern's wildcard says which)."""
    return "Figures" if "figure" in wildcards.keys() else "Tables"


report: "../report/workflow.rst"


rule report:
    input:
        evals=lambda w: list(dict.fromkeys(f for s in report_sections(w.name) for f in section_evals(s))),
        teachers=report_teachers,
        pools=report_pools,
    output:
        # `snakemake --report report.html results/<name>` shows these with their captions
        report(directory(stage_config.REPORT_DIR), patterns=["{figure}.png", "{table}.csv"],
               caption="../report/results.rst", category="{name}", subcategory=report_category),
    params:
        spec=report_spec,
        pretrain=lambda w, input: " ".join(f"--pretrain-report {t}/pretrain_report.json" for t in input.teachers),
        pools=lambda w, input: " ".join(f"--pools {p}" for p in input.pools),
    log:
        "logs/reports/{name}.log",
    shell:
        "python -m stages.report --name {wildcards.name} --spec {params.spec} {params.pretrain} {params.pools}"
        " --out {output}"
        " > {log} 2>&1"


rule report_table:
    input:
        stage_config.REPORT_DIR,
    output:
        stage_config.REPORT_TABLE,
    wildcard_constraints:
        table=r"[A-Za-z0-9_]+\.(csv|tex)",
    log:
        "logs/reports/{name}_{table}.log",
    shell:
        "python -m stages.report.table_file --report {input} --table {wildcards.table} --out {output} 2> >(tee {log} >&2)"
