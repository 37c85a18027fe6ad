"""The ImageNet-shaped rehearsal: how each stage's cost grows from a few images a class to ImageNet.

    python bench/scale.py                      # n = 2, 4, 8 images a class (13 min on 2 idle cores)
    python bench/scale.py --sizes 2 4 8 16 --keep /tmp/scale
    python bench/scale.py --sizes 1            # the test's smoke size

For each n it writes a tree in ImageNet's published layout (train/ and val/, one folder per wnid
of stages.datasets.imagenet.wnids(), n JPEGs of 500x375 a class: ImageNet's typical size) and an
ImageNet-Sketch-layout shift (one folder per wnid, n images a class), a tiny CLIP (the synthetic
world's shape, random weights, logit scale 100, open_clip local-dir:) and a spurious pool file,
then runs the real workflow on it: `snakemake results/scale` in a scratch working directory (made by
stages.toys.make_workdir, as the tests make theirs) with a generated config override. That is the data checks,
embed (1,000 classes x 80 templates plus the pool), the probe (lp's probe job), lp, one epoch of
FLYP and of StarFT with 2 loader workers, evaluation of every target (WiSE-FT's 11 alphas
included) and the report. Driving the workflow rather than the stages' functions keeps the
rehearsal true to what a user runs and independent of the stages' internals.

Measured per job (one job at a time: a `serial` resource), by a sampler polling every 0.2 s:
wall time (/usr/bin/time of the job's python, through a `python` shim first on PATH), peak memory
of the job's process tree (the sum of PSS, so loader workers' shared pages count once), the
/dev/shm in use (statvfs) and, where CUDA is present, device memory (nvidia-smi). Then, per stage,
the growth exponent in n (log-log slope between consecutive sizes) and the extrapolation to the
full data set: a linear fit t = a + b * images over the sizes, evaluated at the stage's image
count at ImageNet's size (train 1,281,167; evaluation: val 50,000 + Sketch 50,889).

The images are a pool of distinct photo-like JPEGs (stages.toys.write_jpegs) hard-linked into
the tree, so writing it costs seconds; every file is decoded as if unique. The model is tiny
(32 px input): the times are those of the pipeline's own overheads and decoding, not of ViT-B/16.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from stages.toys import make_workdir, write_jpegs

EXPERIMENT = "scale"
TRAIN_SET, SHIFT_SET = "scale_imagenet", "scale_sketch"
FULL_TRAIN = 1_281_167              # ILSVRC-2012 train
FULL_EVAL = 50_000 + 50_889         # ILSVRC-2012 val + ImageNet-Sketch
FULL_CLASSES, TEMPLATES = 1000, 80
POOL = ["a photo of a {} in the forest.", "a photo of a {} on a beach.", "a photo of a {} in the snow.",
        "a photo of a {} in a city street.", "a photo of a {} on a lawn.", "a photo of a {} under water."]
# the stage a job belongs to, from its command line (`python -m <module>`), in DAG order
STAGES = [("check_data", "stages.datasets"), ("describe", "stages.describe"), ("embed", "stages.embed"),
          ("probe", "stages.finetune.probe_cli"),
          ("finetune", "stages.finetune"), ("evaluate", "stages.evaluate"), ("report", "stages.report")]


def write_tree(root: Path, n: int, pool: list[Path]) -> dict[str, int]:
    """ImageNet's train/ and val/ and a Sketch-layout shift, n images a class, hard links into `pool`
    (a copy where links are refused). Returns the image count of each set."""
    from stages.datasets.imagenet import wnids

    ids = wnids()   # the readers refuse a tree without all 1,000 folders
    folders = {"train": root / "imagenet" / "train", "val": root / "imagenet" / "val", "sketch": root / "sketch"}
    k = 0
    for name, folder in folders.items():
        for wnid in ids:
            (folder / wnid).mkdir(parents=True)
            for i in range(n):
                src, dst = pool[k % len(pool)], folder / wnid / f"{wnid}_{name}_{i}.JPEG"
                k += 1
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
    return {name: len(ids) * n for name in folders}


def write_clip(folder: Path) -> str:
    """The synthetic world's tiny CLIP shape with random weights, logit scale 100, as local-dir."""
    import open_clip
    import torch

    from stages.method.models import save_local_dir
    from stages.synthetic.teacher import tiny_clip_config

    folder.mkdir(parents=True)
    cfg = tiny_clip_config({"embed_dim": 32, "layers": 1, "width": 32, "patch_size": 8, "text_layers": 1}, 32)
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    save_local_dir(model, cfg, folder)
    return f"local-dir:{folder}"


def overrides(root: Path, model: str, workers: int, batch_size: int) -> dict:
    finetune = {"methods": ["zeroshot", "lp", "flyp", "starft"], "wiseft_of": "flyp", "seeds": [0],
                "epochs": 1, "batch_size": batch_size, "warmup_steps": 0, "lr": 1.0e-5,
                "spurious_types": ["background"], "num_workers": workers, "threads": 2, "lp_l2_grid": [1.0e-4]}
    return {
        "datasets": {TRAIN_SET: {"reader": "imagenet", "root": str(root / "imagenet")},
                     SHIFT_SET: {"reader": "imagenet_sketch", "root": str(root / "sketch")}},
        "experiments": {EXPERIMENT: {
            "seed": 0, "domain": "natural images", "train": TRAIN_SET, "model": {"name": model},
            "evaluate": {"shifts": [SHIFT_SET], "num_workers": workers},
            "describe": {"backend": "file", "types": ["background"], "files": {"background": str(root / "pool.txt")},
                         "min_pool": 3},
            "finetune": finetune}},
    }


def write_shim(folder: Path, times: Path) -> None:
    """`python` first on PATH: /usr/bin/time around the real interpreter, one record per job
    named by the shim's pid (the parent of the job's python)."""
    folder.mkdir(parents=True)
    timer = shutil.which("time") or "/usr/bin/time"
    shim = folder / "python"
    if Path(timer).exists():
        shim.write_text(f'#!/bin/sh\nexec {timer} -f "%e %M" -o "{times}/$$.time" "{sys.executable}" "$@"\n')
    else:  # no GNU time: the sampler's first and last sight of the job give its wall time
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)


def stage_of(cmdline: list[str]) -> str | None:
    if "-m" not in cmdline:
        return None
    module = cmdline[cmdline.index("-m") + 1] if cmdline.index("-m") + 1 < len(cmdline) else ""
    for stage, prefix in sorted(STAGES, key=lambda sp: -len(sp[1])):   # probe_cli before finetune
        if module == prefix or module.startswith(prefix + "."):
            return stage
    return None


def job_name(cmdline: list[str]) -> str:
    """stage, and the run's method where the job has one (finetune, evaluate)."""
    stage = stage_of(cmdline)
    return f"{stage} {cmdline[cmdline.index('--method') + 1]}" if "--method" in cmdline[:-1] else stage


def shm_used() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def gpu_used() -> dict[int, int]:
    """Device memory (bytes) per process, from nvidia-smi; empty without one."""
    if not shutil.which("nvidia-smi"):
        return {}
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         check=False, capture_output=True, text=True).stdout
    used = {}
    for line in out.splitlines():
        pid, mib = (s.strip() for s in line.split(","))
        if pid.isdigit() and mib.isdigit():
            used[int(pid)] = int(mib) << 20
    return used


class Sampler(threading.Thread):
    """Polls the process tree under `root_pid`: each stage job (a `python -m stages...` process
    whose parent is not one) with its peak summed PSS, the shm in use while it ran, device memory."""

    def __init__(self, root_pid: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.period, self.jobs, self.done = root_pid, period, {}, threading.Event()
        self.shm_base = shm_used()

    def run(self):
        tick = 0
        while not self.done.is_set():
            tick += 1
            try:
                procs = psutil.Process(self.root).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            gpu = gpu_used() if tick % 5 == 0 else {}
            shm = shm_used() - self.shm_base
            for proc in procs:
                try:   # a process may end between the listing and any of these reads
                    cmd, parent = proc.cmdline(), proc.parent()
                    if stage_of(cmd) is None or (parent and stage_of(parent.cmdline())):
                        continue
                    ppid, tree = proc.ppid(), [proc, *proc.children(recursive=True)]
                    mem = 0
                    for p in tree:
                        try:
                            mem += getattr(p.memory_full_info(), "pss", 0) or p.memory_info().rss
                        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                            pass
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                now = time.monotonic()
                job = self.jobs.setdefault(proc.pid, {"stage": stage_of(cmd), "cmd": cmd, "ppid": ppid,
                                                      "first": now, "mem": 0, "shm": 0, "gpu": 0})
                job["last"] = now
                job["mem"] = max(job["mem"], mem)
                job["shm"] = max(job["shm"], shm)
                job["gpu"] = max(job["gpu"], sum(gpu.get(p.pid, 0) for p in tree))
            time.sleep(self.period)


def run_size(n: int, workers: int, batch_size: int, scratch: Path, pool: list[Path]) -> dict:
    root, work = scratch / f"n{n}" / "data", scratch / f"n{n}" / "work"
    work.mkdir(parents=True)
    counts = write_tree(root, n, pool)
    (root / "pool.txt").write_text("\n".join(POOL) + "\n")
    model = write_clip(root / "clip")
    make_workdir(work, overrides(root, model, workers, batch_size))
    times = scratch / f"n{n}" / "times"
    times.mkdir()
    write_shim(scratch / f"n{n}" / "shim", times)
    env = {**os.environ, "PATH": f"{scratch / f'n{n}' / 'shim'}{os.pathsep}{os.environ['PATH']}"}
    # one job at a time, so that each job's memory and the shm it leaves in use are its own
    cmd = [sys.executable, "-m", "snakemake", f"results/{EXPERIMENT}", "--cores", "2", "--resources", "serial=1",
           "--default-resources", "serial=1", "--configfile", "override.yaml"]
    start = time.monotonic()
    with open(work / "snakemake.out", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        sampler.start()
        proc.wait()
    sampler.done.set()
    sampler.join()
    total = time.monotonic() - start
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted((work / "logs").rglob("*.log")))
        raise SystemExit(f"n={n}: snakemake failed (its output: {work}/snakemake.out):\n{logs}")
    stages: dict[str, dict] = {}
    for job in sampler.jobs.values():
        record = times / f"{job['ppid']}.time"
        if record.exists() and record.read_text().split():
            wall = float(record.read_text().split()[-2])
        else:
            wall = job["last"] - job["first"]
        for name in {job["stage"], job_name(job["cmd"])}:
            s = stages.setdefault(name, {"jobs": 0, "wall": 0.0, "mem": 0, "shm": 0, "gpu": 0})
            s["jobs"] += 1
            s["wall"] += wall
            for key in ("mem", "shm", "gpu"):
                s[key] = max(s[key], job[key])
    report = work / "results" / EXPERIMENT / "report.md"
    return {"n": n, "counts": counts, "stages": stages, "total": total, "report": report.exists()}


# what each stage must hold at ImageNet's size, ViT-B/16 (embedding 512), in bytes: the bound its
# memory should stay within (plus the model and the libraries), whatever the number of images
def must_hold(workers: int = 12, batch: int = 512) -> dict[str, tuple[float, str]]:
    D, image = 512, 3 * 224 * 224
    return {
        "check_data": (FULL_TRAIN * 100, "the file list: 1.28 M paths x ~100 B (label arrays, no decode)"),
        "describe": (0, "the pool file (independent of images)"),
        "embed": (FULL_CLASSES * TEMPLATES * D * 4, "1,000 x 80 prompts x 512 float32 (or one class's 80 at a time)"),
        "probe": (FULL_TRAIN * D * 2 + FULL_TRAIN * 8 + (256 << 20),
                  "features 1.28 M x 512 float16 (1.31 GB) + labels + one 256 MiB float64 chunk"),
        "finetune": ((workers * 2 + 1) * batch * image,
                     (f"shm: ({workers} workers x prefetch 2 + 1) uint8 batches of {batch} x 3x224x224; "
                     "host: the file list, model and optimizer")),
        "evaluate": (FULL_EVAL * 11 * 8 + FULL_CLASSES * D * 4,
                     "per image: label + 11 WiSE-FT predictions (int64); the 1,000 x 512 head"),
        "report": (0, "metrics files only (independent of images)"),
    }


SCALES_WITH = {"check_data": ("train + val + shift", FULL_TRAIN + 50_000 + 50_889),
               "describe": ("-", None), "embed": ("classes x templates", None), "probe": ("train", FULL_TRAIN),
               "finetune": ("train", FULL_TRAIN), "evaluate": ("val + shift", FULL_EVAL), "report": ("-", None)}


def images_of(stage: str, counts: dict[str, int]) -> int:
    return {"check_data": sum(counts.values()), "probe": counts["train"], "finetune": counts["train"],
            "evaluate": counts["val"] + counts["sketch"]}.get(stage, counts["train"])


def table(results: list[dict], workers: int) -> str:
    mib = 1 << 20
    sizes = [r["n"] for r in results]
    head = ("| stage | jobs | scales with | " + " | ".join(f"wall s n={n}" for n in sizes)
            + " | exponent | extrapolated wall | " + " | ".join(f"peak mem MiB n={n}" for n in sizes)
            + " | shm MiB (max) | device MiB (max) | must hold at full size |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    hold = must_hold()
    names = []
    for stage, _ in STAGES:
        names.append(stage)
        jobs = sorted({k for r in results for k in r["stages"] if k.startswith(stage + " ")})
        names += jobs if len(jobs) > 1 else []
    for name in names:
        stage = name.split()[0]
        rows = [r["stages"].get(name) for r in results]
        if not any(rows):
            continue
        walls = [row["wall"] if row else float("nan") for row in rows]
        imgs = [images_of(stage, r["counts"]) for r in results]
        slopes = [math.log(walls[i + 1] / walls[i]) / math.log(imgs[i + 1] / imgs[i])
                  for i in range(len(walls) - 1) if walls[i] > 0 and walls[i + 1] > 0 and imgs[i + 1] != imgs[i]]
        exponent = ", ".join(f"{s:.2f}" for s in slopes) or "-"
        what, full = SCALES_WITH[stage]
        if full and len(set(imgs)) > 1:
            b, a = np.polyfit(imgs, walls, 1)
            # a falling fit is noise around a constant cost: no growth to extrapolate
            extra = f"{(a + b * full) / 3600:.1f} h" if b > 0 else "no growth measured"
        else:
            extra = f"{walls[-1]:.0f} s (constant)"
        jobs = rows[-1]["jobs"] if rows[-1] else 0
        mems = " | ".join(f"{row['mem'] / mib:.0f}" if row else "-" for row in rows)
        shm = max((row["shm"] for row in rows if row), default=0) / mib
        gpu = max((row["gpu"] for row in rows if row), default=0) / mib
        need, why = hold[stage] if name == stage else (None, "")
        need = f"{need / 1e9:.2f} GB: {why}" if need is not None else ""
        lines.append(f"| {name} | {jobs} | {what} | " + " | ".join(f"{w:.1f}" for w in walls)
                     + f" | {exponent} | {extra} | {mems} | {shm:.0f} | {gpu:.0f} | {need} |")
    totals = " ".join(f"n={r['n']}: {r['total']:.0f} s" for r in results)
    return "\n".join(lines) + f"\n\nwhole run (snakemake, incl. DAG building): {totals}\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8], help="images a class, per set")
    ap.add_argument("--workers", type=int, default=2, help="loader workers of fine-tuning and evaluation")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--pool", type=int, default=64, help="distinct JPEGs the tree links to")
    ap.add_argument("--keep", type=Path, help="scratch folder to keep (default: a temporary one, removed)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--table", type=Path, help="only print the table of measurements a --json run wrote")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text()), args.workers))
        return 0

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="scale_"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        (scratch / "pool").mkdir(exist_ok=True)
        pool = write_jpegs(scratch / "pool", args.pool)
        results = []
        for n in sorted(args.sizes):
            results.append(run_size(n, args.workers, args.batch_size, scratch, pool))
            if args.json:   # after every size: a long run interrupted keeps what it measured
                args.json.write_text(json.dumps(results, indent=1, default=str))
            r = results[-1]
            print(f"n={n}: {r['total']:.0f} s, " + ", ".join(f"{k} {v['wall']:.1f} s" for k, v in r["stages"].items()),
                  flush=True)
        print()
        print(table(results, args.workers))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
