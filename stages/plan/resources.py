"""Each job's SLURM request computed from its own configuration, and refused when no node has it.

The rules' `threads:` and `resources:` (gpu, mem_mb, runtime) call `request` while Snakemake
builds the DAG; the bill (stages.plan.bill) sums the same requests' expected work. Pure: no
torch, no file reads beyond the model's open_clip JSON (stages.plan.model_size).

- GPUs: `finetune.processes` for a run that trains weights on a GPU; 0 for a run that trains
  none (lp: its probe is fitted by the probe job), for `device: cpu` and for the synthetic world's
  tiny models (their embed and evaluate jobs run on the CPU).
- CPUs: processes x (loader workers + 1): each process's workers decode, the process itself
  feeds the GPU. `finetune.threads` > 0 states the count instead.
- Memory: per process a base (torch, CUDA context, the caption table), the model's fp32 weights
  twice (student and teacher, held on the host while loading; on the CPU also gradients and
  Adam's two moments), each worker's own pages, and the loader's shared memory (shm.loader_bytes),
  times MEM_MARGIN.
- Time: images x epochs x the method's step cost / (images per second per GPU x processes), the
  rate being the cluster's GPU kind's (GPU_RATES, or `cluster.images_per_second`) divided by the
  model's compute per image relative to ViT-B/16's, times `cluster.time_margin`, plus a start-up.

Every constant says where it comes from; "estimate" marks those nothing here has measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import config as stage_config
from ..datasets import EVAL_SPLITS
from ..datasets.protocol import IMAGES
from ..finetune import runs as ft_runs
from ..finetune.shm import LABEL_BYTES, PREFETCH, loader_bytes
from ..method.registry import METHODS
from ..synthetic.tiny_config import tiny_clip_config
from . import model_size

GIB = 1 << 30

# FLYP's ViT-B/16 training step, images per second on one GPU of each kind, bf16 autocast.
GPU_RATES = {
    "h200": (1600, "measured: bench/step_time.py on one H200, FLYP ViT-B/16, bf16, batch 128: 1,603 images/s "
                   "(bench/results/gpu_check_h200.txt); the step alone, a fed loader assumed"),
    "h100": (1450, "estimate, not measured: the H200's rate x 0.9 (the same Hopper compute, less memory "
                   "bandwidth); run bash bench/gpu_check.sh on one and set cluster.images_per_second"),
    "a100": (510, "estimate, not measured: the H200's rate x 312/989 (dense bf16 TFLOP/s, A100 / H100); "
                  "run bash bench/gpu_check.sh on one and set cluster.images_per_second"),
}
# The same step on CPU cores (device: cpu), images per second per core for ViT-B/16. The tiny
# synthetic CLIP, scaled from it by compute, is overhead-bound: its estimate is a floor.
CPU_RATE_PER_CORE = (0.47, "measured here: bench/step_time.py --model ViT-B-16 --batch 16 --device cpu "
                           "--threads 1 (FLYP, fp32: 34.3 s a step on a shared 2-core machine)")
# The regulariser's step against FLYP's: step_time.py's starft / flyp on the H200, 1.110 with 2
# classes, 1.096 with 1,000 (bench/results/gpu_check_h200.txt).
REGULARIZER_COST = 1.11
# finetune.grad_checkpointing recomputes the forward in the backward: one forward more, ~1/3 of a
# step (bench/grad_checkpointing.py measured x 1.13 for ViT-B/32 on the CPU; the GPU is unmeasured)
CHECKPOINTING_COST = 4 / 3
# A forward pass (evaluation, the probe's features) against a training step: ~1/3 of its FLOPs
# (backward ~2x forward). An estimate: the loader usually limits these jobs first.
FORWARD_SPEEDUP = 3.0
# PIL decode + crop per core, 500x375 JPEGs (README "Keeping the GPU fed", bench/loader.py, 2-core machine)
DECODE_PER_CORE = (130, "measured: bench/loader.py, PIL decode + bicubic crop (README 'Keeping the GPU fed')")

PROCESS_BYTES = 3 * GIB      # estimate: a CUDA training process's torch, CUDA context, open_clip, captions
CPU_PROCESS_BYTES = 1 * GIB  # a CPU job's own: docs/scale.md measured 0.6-1.3 GiB peaks for tiny models
WORKER_BYTES = GIB // 2      # estimate: a loader worker's own pages (the image list, PIL buffers)
MEM_MARGIN = 1.25
STARTUP_S = 300              # imports, model load, the caption table, the workers' start (estimate)
# the synthetic world's jobs start in ~4 s on a CPU and score a target in ~1.5 s (README, measured)
TINY_STARTUP_S, TINY_TARGET_S = 5, 2
TARGET_START_S = 30          # a target's reader and zero-shot head (ImageNet's: 1,000 x 80 prompts), estimate
PROBE_FIT_S = 1200           # L-BFGS over the l2 grid on ImageNet's features (estimate; docs/finetune.md)
MIN_RUNTIME_MIN = 10
# the training split's images of the published sets (their own documentation; carved splits as
# stages.datasets.transfer carves them: 80% of the published training split)
TRAIN_IMAGES = {
    "imagenet": {"train": 1_281_167},
    "waterbirds": {"train": 4_795},
    "celeba": {"train": 162_770},
    "caltech101": {"train": 2_424, "trainval": 3_030},
    "stanford_cars": {"train": 6_515, "trainval": 8_144},
    "flowers102": {"train": 1_020},
    "sun397": {"train": 15_880, "trainval": 19_850},
}


class ResourceError(ValueError):
    """A job asks for more than one node of the cluster has; the message names the key."""


@dataclass(frozen=True)
class Request:
    """One job's request (what SLURM is asked) and the expected work behind it (what the bill sums)."""

    gpus: int
    cpus: int
    mem_mb: int
    runtime_min: int
    work_s: float                 # expected wall seconds, before the margin
    notes: tuple = field(default=())   # where the numbers come from


def gpu_rate(cluster: dict) -> tuple[float, str]:
    """Images per second of FLYP's ViT-B/16 step on one GPU of the cluster's kind, and its source."""
    if cluster["images_per_second"] is not None:
        return float(cluster["images_per_second"]), f"cluster.images_per_second ({cluster['gpu']})"
    if cluster["gpu"] not in GPU_RATES:
        raise ResourceError(f"config key cluster.gpu: no rate known for GPU kind {cluster['gpu']!r} (known: "
                            f"{', '.join(GPU_RATES)}): measure it (bash bench/gpu_check.sh) and set "
                            "cluster.images_per_second")
    return GPU_RATES[cluster["gpu"]]


def _world(dataset: dict) -> dict | None:
    return dataset.get("synthetic") or dataset.get("source")


def split_images(dataset: dict, split: str) -> int | None:
    """Images of a data set's split as published or as the synthetic world draws them; None unknown."""
    world = _world(dataset)
    if world is not None:
        return world.get(f"n_{split}")
    return {**IMAGES.get(dataset["reader"], {}), **TRAIN_IMAGES.get(dataset["reader"], {})}.get(split)


def evaluated_images(dataset: dict) -> int | None:
    """Images of every split a data set's evaluation reads (None if any is unknown)."""
    splits = dataset["splits"] or EVAL_SPLITS[dataset["reader"]]
    counts = [split_images(dataset, s) for s in splits]
    return None if None in counts else sum(counts)


def workers(run: dict) -> int:
    """The training loader's workers of a run configuration or finetune section (null resolved
    by `decode`, as the stage resolves it)."""
    return ft_runs.loader_workers(run)


def _on_gpu(device: str, tiny: bool) -> bool:
    return device != "cpu" and not tiny


def _mem_mb(nbytes: float) -> int:
    return int(math.ceil(nbytes * MEM_MARGIN / 1e9)) * 1000


def _runtime(work_s: float, cluster: dict) -> int:
    return max(MIN_RUNTIME_MIN, int(math.ceil(work_s * cluster["time_margin"] / 60)))


def _model(config: dict, experiment: dict) -> tuple[int, float, int]:
    """(parameters, compute per image relative to ViT-B/16, input side) of an experiment's model:
    the synthetic world's tiny CLIP from its pretrain section, a published one from its open_clip
    JSON; a model unknown before a job runs (an hf-hub: id) counts as ViT-B/16's compute and no
    weights."""
    world = stage_config.synthetic_teacher(config, experiment)
    if world is not None:
        d = config["datasets"][world]
        side = d["synthetic"]["image_size"]
        size = model_size.size_of(tiny_clip_config(d["pretrain"], side))
        return size["params"], size["work"], side
    name = experiment["model"]["name"]
    size = model_size.size(name)
    return (size or {}).get("params", 0), (size or {}).get("work", 1.0), model_size.image_size(name)


def feature_bytes(config: dict, experiment: dict, images: int) -> int:
    """The probe's cached features: float16 embeddings of `images` (1.31 GB for ImageNet at 512)."""
    world = stage_config.synthetic_teacher(config, experiment)
    cfg = (config["datasets"][world]["pretrain"] if world else
           model_size.open_clip_config(experiment["model"]["name"])) or {}
    return images * cfg.get("embed_dim", 1024) * 2   # unknown model: ViT-L's 1,024 dimensions, an upper bound


def _tiny(config: dict, job: dict) -> bool:
    """Whether the experiment's teacher is the synthetic world's tiny CLIP (built by the pretrain
    rule): its steps are timed at the CPU's rate, its embed and evaluate jobs ask for no GPU."""
    return stage_config.synthetic_teacher(config, job) is not None


def _train_rate(config: dict, experiment: dict, processes: int, cpus: int, on_gpu: bool) -> tuple[float, str]:
    """Training images per second of the experiment's model on `processes` GPUs or `cpus` cores."""
    _, work, _ = _model(config, experiment)
    if on_gpu:
        rate, source = gpu_rate(config["cluster"])
        return rate * processes / work, source
    rate, source = CPU_RATE_PER_CORE
    return rate * cpus / work, source


def finetune(config: dict, job: dict, method: str) -> Request:
    """The request of the finetune job of run `method` (a method or variant) of `job`
    (stages.config.train_job's dict)."""
    run = ft_runs.run_config(job["finetune"], method)
    base = METHODS[run["method"]]
    experiment = config["experiments"][job["experiment"]]
    tiny = _tiny(config, experiment)
    dataset = config["datasets"][job["data"]["dataset"]]
    processes = run["processes"]
    # the GPUs of a run follow its device alone (even a tiny model trains where `device` says);
    # its rate does not: the tiny CLIP's steps are timed at the CPU's
    on_gpu = run["device"] != "cpu" and base.fine_tunes
    # lp trains nothing: it reads its probe and writes the checkpoint, without a loader; a run on
    # the CPU computes on every core it gets (a node's, capped by --cores on one machine)
    cpus = run["threads"] or (1 if not base.fine_tunes else config["cluster"]["cores_per_node"]
                              if run["device"] == "cpu" else processes * (workers(run) + 1))
    params, _, side = _model(config, experiment)
    notes = []
    per_process = CPU_PROCESS_BYTES if not on_gpu else PROCESS_BYTES
    weights = params * 4 * (2 if on_gpu else 5)
    shm = loader_bytes(workers(run), PREFETCH, run["batch_size"] // processes * (3 * side * side + LABEL_BYTES),
                       processes)
    mem = processes * (per_process + weights + workers(run) * WORKER_BYTES) + shm if base.fine_tunes \
        else per_process + weights
    n = split_images(dataset, run["train_split"])
    startup = TINY_STARTUP_S if tiny else STARTUP_S
    if not base.fine_tunes:
        work = startup   # lp: reads its probe, writes the checkpoint
    elif n is None:
        work = 6 * 3600
        notes.append(f"{job['data']['dataset']}'s {run['train_split']} size unknown before its data check: 6 h")
    else:
        rate, source = _train_rate(config, experiment, processes, cpus, on_gpu and not tiny)
        cost = ((REGULARIZER_COST if base.uses_spurious else 1.0)
                * (CHECKPOINTING_COST if run["grad_checkpointing"] else 1))
        work = startup + n * run["epochs"] * cost / rate
        notes.append(f"{n:,} images x {run['epochs']} epochs x {cost} / {rate:,.0f} images/s ({source})")
        if run["select"] == "val_worst_group":
            val = split_images(dataset, run["val_split"]) or 0
            work += val * run["epochs"] / (rate * FORWARD_SPEEDUP)
    return Request(gpus=processes if on_gpu else 0, cpus=cpus, mem_mb=_mem_mb(mem),
                   runtime_min=_runtime(work, config["cluster"]), work_s=work, notes=tuple(notes))


def _forward_rate(config: dict, experiment: dict, loader_workers: int, on_gpu: bool, passes: int = 1) -> float:
    """Images per second of a forward pass over a data set: the model's (on its GPU, or on the
    workers' cores + 1), each image scored `passes` times, or the loader's decoding if lower."""
    model_rate, _ = _train_rate(config, experiment, 1, loader_workers + 1, on_gpu)
    decode_rate = DECODE_PER_CORE[0] * max(1, loader_workers)
    return min(model_rate * FORWARD_SPEEDUP / passes, decode_rate)


def probe(config: dict, job: dict) -> Request:
    """The request of the probe job of experiment `job` (features of the training split, the fit)."""
    ft = job["finetune"]
    tiny = _tiny(config, config["experiments"][job["experiment"]])
    on_gpu = ft["device"] != "cpu"   # as the run's own GPUs (finetune)
    dataset = config["datasets"][job["data"]["dataset"]]
    params, _, _ = _model(config, config['experiments'][job['experiment']])
    n = split_images(dataset, ft["train_split"]) or 0
    features = feature_bytes(config, config["experiments"][job["experiment"]], n)
    work = STARTUP_S + n / _forward_rate(config, config['experiments'][job['experiment']], workers(ft),
                                         on_gpu and not tiny) + (PROBE_FIT_S if n > 1e5 else 60)
    mem = (PROCESS_BYTES if on_gpu else CPU_PROCESS_BYTES) + params * 4 * 2 + 3 * features \
        + workers(ft) * WORKER_BYTES
    cpus = ft["threads"] or (config["cluster"]["cores_per_node"] if not on_gpu else workers(ft) + 1)
    return Request(gpus=int(on_gpu), cpus=cpus, mem_mb=_mem_mb(mem),
                   runtime_min=_runtime(work, config["cluster"]), work_s=work)


def evaluate(config: dict, experiment: str, method: str, targets: list[str]) -> Request:
    """The request of the evaluate job of a run on `targets` (data set names): every evaluated
    split of each, once per WiSE-FT alpha for `wiseft`."""
    e = config["experiments"][experiment]
    ev = e["evaluate"]
    tiny = _tiny(config, e)
    on_gpu = _on_gpu(ev["device"], tiny)
    params, _, _ = _model(config, e)
    counts = [evaluated_images(config["datasets"][t]) for t in targets]
    n = sum(c or 0 for c in counts)
    # WiSE-FT decodes each batch once and scores it at every alpha: the loader's rate holds once,
    # the model's is divided by the alphas
    passes = len(e["finetune"]["wiseft_alphas"]) if method == "wiseft" else 1
    start, per_target = (TINY_STARTUP_S, TINY_TARGET_S) if tiny else (STARTUP_S, TARGET_START_S)
    work = start + per_target * len(targets) + n / _forward_rate(config, e, ev["num_workers"], on_gpu, passes)
    # the model, the zero-shot weights beside it (WiSE-FT), the heads
    mem = (PROCESS_BYTES if on_gpu else CPU_PROCESS_BYTES) + params * 4 * 3 + ev["num_workers"] * WORKER_BYTES
    notes = (f"{n:,} images x {passes} passes",) + (("some targets' sizes unknown",) if None in counts else ())
    return Request(gpus=int(on_gpu), cpus=ev["num_workers"] + 1, mem_mb=_mem_mb(mem),
                   runtime_min=_runtime(work, config["cluster"]), work_s=work, notes=notes)


def embed(config: dict, job: dict) -> Request:
    """The request of the embed job (the teacher's text embeddings: captions and pools, no images)."""
    tiny = _tiny(config, config["experiments"][job["experiment"]])
    on_gpu = _on_gpu(job["finetune"]["device"], tiny)
    params, _, _ = _model(config, config['experiments'][job['experiment']])
    work = STARTUP_S + 300   # estimate: ~10^5 captions through the text tower
    mem = (PROCESS_BYTES if on_gpu else CPU_PROCESS_BYTES) + params * 4 * 2
    return Request(gpus=int(on_gpu), cpus=1, mem_mb=_mem_mb(mem), runtime_min=_runtime(work, config["cluster"]),
                   work_s=work)


def check(req: Request, cluster: dict, what: str, key: str) -> Request:
    """`req` if one node holds it; ResourceError naming the job, both numbers and the keys."""
    if req.gpus > cluster["gpus_per_node"]:
        raise ResourceError(f"config key {key}.processes: {what} asks for {req.gpus} GPUs, more than the "
                            f"{cluster['gpus_per_node']} of a node (cluster.gpus_per_node)")
    if req.cpus > cluster["cores_per_node"]:
        raise ResourceError(f"config key {key}.num_workers: {what} asks for {req.cpus} CPUs (processes x (num_workers "
                            f"+ 1), or threads), more than the {cluster['cores_per_node']} cores of a node "
                            "(cluster.cores_per_node); fewer loader workers, decode: device or a resized copy "
                            "of the training split need fewer")
    if req.mem_mb > cluster["mem_per_node_gb"] * 1000:
        raise ResourceError(f"config key {key}.batch_size: {what} asks for {req.mem_mb / 1000:,.0f} GB of memory, "
                            f"more than the {cluster['mem_per_node_gb']:,} GB of a node (cluster.mem_per_node_gb)")
    return req


def check_experiment(config: dict, job: dict) -> None:
    """Every finetune, probe and evaluate job of an experiment against one node (check)."""
    from ..method.registry import EVAL_ONLY

    name, cluster = job["experiment"], config["cluster"]
    e = config["experiments"][name]
    for method in job["finetune"]["methods"]:
        if method in EVAL_ONLY or not METHODS[ft_runs.run_config(job["finetune"], method)["method"]].trains:
            continue
        check(finetune(config, job, method), cluster, f"run {method} of experiment {name}",
              f"experiments.{name}.finetune")
        if METHODS[ft_runs.run_config(job["finetune"], method)["method"]].linear_probe:
            check(probe(config, job), cluster, f"the probe of experiment {name}", f"experiments.{name}.finetune")
    check(evaluate(config, name, "wiseft", list(stage_config.target_roles(e))), cluster,
          f"the evaluation of experiment {name}", f"experiments.{name}.evaluate")
