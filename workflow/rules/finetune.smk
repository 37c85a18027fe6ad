# One fine-tuning job per (experiment, method, seed) on the experiment's training set; see
# docs/finetune.md. `wiseft` has no job: the evaluate rule interpolates the checkpoint of
# `finetune.wiseft_of`. The linear probe of lp and LP-FT is a job of its own (rule `probe`), one
# per experiment and probe configuration, read by every seed. A run two experiments ask for with
# the same settings is trained once, by the first (stages/finetune/sharing.py): the other's
# evaluate and export jobs read its checkpoint (run_checkpoint, evaluate.smk); a probe likewise.
from stages.finetune import probe_config as ft_probe
from stages.finetune import runs as ft_runs
from stages.finetune import sharing as ft_sharing
from stages.method.registry import EVAL_ONLY, METHODS
from stages.plan import resources as plan

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
            _run = ft_runs.RunConfig.from_dict(ft_runs.run_config(_job["finetune"], _method))
            if _run.base.fine_tunes:
                try:
                    ft_runs.check_schedule(_run, _world["n_train"], _run.processes)
                except ft_runs.FinetuneConfigError as e:
                    raise WorkflowError(f"config key experiments.{_name}.{e}") from None
    # every job's request against one node of `cluster`, before any job (stages.plan.resources)
    try:
        plan.check_experiment(CONFIG, _job)
    except plan.ResourceError as e:
        raise WorkflowError(str(e)) from None


_REQUESTS = {}


def request(kind, wildcards):
    """The job's SLURM request (stages.plan.resources), computed once per job."""
    key = (kind, wildcards.experiment, wildcards.get("method"), wildcards.get("targets"))
    if key not in _REQUESTS:
        if kind == "finetune":
            _REQUESTS[key] = plan.finetune(CONFIG, job(wildcards), wildcards.method)
        elif kind == "probe":
            _REQUESTS[key] = plan.probe(CONFIG, job(wildcards))
        elif kind == "embed":
            _REQUESTS[key] = plan.embed(CONFIG, job(wildcards))
        else:
            _REQUESTS[key] = plan.evaluate(CONFIG, wildcards.experiment, wildcards.method, list(job_targets(wildcards)))
    return _REQUESTS[key]

# (experiment, method, seed) -> the experiment that trains the run; (experiment, probe) -> the
# experiment whose probe job fits it
RUN_OWNERS = ft_sharing.run_owners(CONFIG, JOBS)
PROBE_OWNERS = ft_sharing.probe_owners(CONFIG, JOBS)


def owned_run_dir(experiment, method, seed):
    """The folder of the checkpoint of run (method, seed) of `experiment`: its owner's."""
    owner = RUN_OWNERS.get((experiment, method, int(seed)), experiment)
    return stage_config.RUN_DIR.format(experiment=owner, method=method, seed=seed)


def own_run(wildcards):
    """Refuse to train a run another experiment owns: asking for its checkpoint by path would
    otherwise train the same settings twice."""
    owner = RUN_OWNERS.get((wildcards.experiment, wildcards.method, int(wildcards.seed)), wildcards.experiment)
    if owner != wildcards.experiment:
        raise WorkflowError(f"run {wildcards.method} seed {wildcards.seed} of experiment {wildcards.experiment} "
                            f"has the settings of experiment {owner}'s: it is trained once, as "
                            + stage_config.RUN_DIR.format(experiment=owner, method=wildcards.method,
                                                          seed=wildcards.seed))
    return []


def finetune_json(wildcards):
    """The job keys a run reads (its hyper-parameters come separately, resolved)."""
    j = job(wildcards)
    return quoted_json({k: j[k] for k in ("classnames", "data", "model", "evaluate", "superclasses") if k in j})


def run_json(wildcards):
    """The resolved run configuration: a change of its own hyper-parameters reruns the job, a
    change of another method's or of the seed list does not. Less `track` (track_option)."""
    run = ft_runs.run_config(job(wildcards)["finetune"], wildcards.method)
    run.pop("track", None)
    return quoted_json(run)


def track_option(wildcards, output):
    """Live tracking (finetune.track), apart from run_json: it changes no result, so turning it on
    must not rerun finished runs. Taking `output` makes the param one Snakemake derives from the
    job's files, which its params rerun trigger leaves out."""
    track = job(wildcards)["finetune"]["track"]
    return f"--set {shlex.quote('track=' + json.dumps(track))}" if track else ""


def probe_dataset_json(wildcards):
    """finetune_json less the training split's resized copy: the probe encodes the original
    images, so turning the copy on does not refit it."""
    j = job(wildcards)
    data = {k: v for k, v in j["data"].items() if k != "resized_copy"}
    return quoted_json({"classnames": j["classnames"], "data": data, "model": j["model"], "evaluate": j["evaluate"]})


def resized_copy(wildcards):
    """The training split's pre-resized copy (rule resize_split), when the data set asks for one."""
    copy = job(wildcards)["data"].get("resized_copy")
    return [copy] if copy else []


def finetune_launcher(wildcards):
    n = job(wildcards)["finetune"]["processes"]
    return "python -m" if n == 1 else f"torchrun --standalone --nproc_per_node {n} -m"


def run_probe(wildcards):
    """The probe file an lp or lpft run (or variant) reads; none for other methods."""
    run = ft_runs.run_config(job(wildcards)["finetune"], wildcards.method)
    if not METHODS[run["method"]].linear_probe:
        return []
    owner = PROBE_OWNERS.get((wildcards.experiment, ft_probe.probe_id(run)), wildcards.experiment)
    return [ft_probe.probe_path(owner, run)]


def probe_job(wildcards):
    """The run configuration of probe `wildcards.probe`: that of the experiment's lp/lpft runs
    whose probe it is (they agree on ft_probe.PROBE_KEYS; the rest is the experiment's)."""
    finetune = job(wildcards)["finetune"]
    for name in finetune["methods"]:
        if name in EVAL_ONLY:
            continue
        run = ft_runs.run_config(finetune, name)
        if METHODS[run["method"]].linear_probe and ft_probe.probe_id(run) == wildcards.probe:
            return ft_probe.probe_job_config(finetune, run)
    raise WorkflowError(f"experiment {wildcards.experiment} has no lp or lpft run with probe {wildcards.probe}")


def preflight_input(wildcards):
    """The experiment's pre-flight record (rule preflight) on real data; none for a synthetic
    world, whose schedules are checked above, at parse time. ancient(): a rerun of the check
    (its runs' settings changed) does not by itself retrain anything."""
    if job(wildcards).get("synthetic"):
        return []
    return [ancient(stage_config.PREFLIGHT.format(experiment=wildcards.experiment))]


def preflight_runs(wildcards):
    """The resolved configuration of every run the experiment trains itself, under one seed at
    least (a run shared under every seed is its owner's to check)."""
    e, name = EXPERIMENTS[wildcards.experiment], wildcards.experiment
    runs = {m: ft_runs.run_config(e["finetune"], m) for m in ft_sharing.trained_runs(e)
            if any(RUN_OWNERS[(name, m, s)] == name for s in e["finetune"]["seeds"])}
    return quoted_json(runs)


# Before any probe or fine-tuning job of the experiment, on the node that runs Snakemake: every
# run's batch, warm-up and steps against the training split's image count in the data check and
# the process count (stages/preflight.py), one line naming the key, instead of a failure once a
# GPU job has waited in the queue and loaded its model.
rule preflight:
    input:
        data_check=lambda w: data_check(EXPERIMENTS[w.experiment]["train"]),
    output:
        stage_config.PREFLIGHT,
    params:
        runs=preflight_runs,
        split=lambda w: EXPERIMENTS[w.experiment]["finetune"]["train_split"],
        variants=lambda w: quoted_json(EXPERIMENTS[w.experiment]["finetune"]["variants"]),
    localrule: True
    log:
        "logs/{experiment}/preflight.log",
    shell:
        "python -m stages.preflight schedule --experiment {wildcards.experiment} --runs {params.runs}"
        " --data-check {input.data_check} --split {params.split} --variants {params.variants}"
        " --out {output} 2> >(tee {log} >&2)"


# A teacher from open_clip's registry is downloaded once, on the node that runs Snakemake, into the
# cache every job reads (stages/method/clip_cache.py): no GPU job downloads, and compute nodes need
# no internet. Every job that loads the teacher takes the record as input (model_input).
rule fetch_clip:
    output:
        clip_cache.CLIP_FETCHED,
    wildcard_constraints:
        model="[A-Za-z0-9][A-Za-z0-9_.+-]*",
        pretrained="[A-Za-z0-9][A-Za-z0-9_.+-]*",
    localrule: True
    log:
        "logs/models/fetch_clip_{model}_{pretrained}.log",
    shell:
        "python -m stages.preflight fetch-clip --name {wildcards.model} --pretrained {wildcards.pretrained}"
        " --cache-dir {clip_cache.CLIP_CACHE} --out {output} 2> >(tee {log} >&2)"


rule probe:
    input:
        preflight=preflight_input,
        data_check=lambda w: data_check(EXPERIMENTS[w.experiment]["train"]),
        model=model_input,
    output:
        ft_probe.PROBE_PATH,
    wildcard_constraints:
        probe="[0-9a-f]{10}",
    params:
        cfg=probe_dataset_json,
        run=lambda w: quoted_json(probe_job(w)),
    threads: lambda w: request("probe", w).cpus
    resources:
        gpu=lambda w: request("probe", w).gpus,
        mem_mb=lambda w: request("probe", w).mem_mb,
        runtime=lambda w: request("probe", w).runtime_min,
    log:
        "logs/{experiment}/probe_{probe}.log",
    shell:
        "python -m stages.finetune.probe_cli --dataset-config {params.cfg} --run-config {params.run}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule finetune:
    input:
        preflight=preflight_input,
        data_check=lambda w: data_check(EXPERIMENTS[w.experiment]["train"]),
        embeddings=stage_config.TEACHER_TEXT,
        model=model_input,
        probe=run_probe,
        resized_copy=resized_copy,
        own=own_run,
    output:
        checkpoint=f"{stage_config.RUN_DIR}/checkpoint.pt",
        log=f"{stage_config.RUN_DIR}/train_log.csv",
    wildcard_constraints:
        method="(?!wiseft/)[a-z][a-z0-9_]*",
    params:
        cfg=finetune_json,
        run=run_json,
        launcher=finetune_launcher,
        out_dir=lambda w: stage_config.RUN_DIR.format(experiment=w.experiment, method=w.method, seed=w.seed),
        probe=lambda w, input: f"--probe {input.probe}" if input.probe else "",
        track=track_option,
    # processes x (loader workers + 1) CPUs, the GPUs a run that trains weights uses, memory and
    # time from its work (stages.plan.resources; capped by --cores on one machine)
    threads: lambda w: request("finetune", w).cpus
    resources:
        gpu=lambda w: request("finetune", w).gpus,
        mem_mb=lambda w: request("finetune", w).mem_mb,
        runtime=lambda w: request("finetune", w).runtime_min,
    log:
        "logs/{experiment}/finetune_{method}_seed{seed}.log",
    shell:
        # An interrupted job leaves results/runs/.../resume.pt (the last finished epoch): the rerun
        # continues from it. It is removed only once the stage has succeeded: a job cut after the
        # stage wrote its checkpoint (which Snakemake then removes) resumes at its last epoch.
        "{params.launcher} stages.finetune --dataset-config {params.cfg} --run-config {params.run}"
        " --method {wildcards.method} --seed {wildcards.seed} --embeddings {input.embeddings}"
        " --out-dir {params.out_dir} {params.probe} {params.track} --set threads={threads} --keep-resume > {log} 2>&1"
        " && rm -f {params.out_dir}/resume.pt"
