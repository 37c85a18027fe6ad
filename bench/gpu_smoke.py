"""A few fine-tuning steps of the real stage on CUDA (bf16 autocast), with a random-init open_clip
model saved as a local-dir teacher: embed -> finetune (starft, ft, augment off, device decode) -> resume -> evaluate.

    python bench/gpu_smoke.py [--model ViT-B-16] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import open_clip
import torch

from stages import datasets
from stages.embed import run as embed
from stages.evaluate import run as evaluate
from stages.finetune.runs import RunConfig, run_config
from stages.finetune.train import train
from stages.method.models import save_local_dir
from stages.toys import dataset_config, eval_config, make_dataset, make_pools, make_tiny_clip


def stop(epochs_done: int) -> None:
    """The training loop's epoch hook: stop the run as a kill would, its first resume.pt written."""
    raise KeyboardInterrupt


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-train", type=int, default=256)
    p.add_argument("--device", default="cuda", help="cpu: a dry run of this script (with --model tiny)")
    a = p.parse_args(argv)
    assert a.device == "cpu" or torch.cuda.is_available(), "needs CUDA"
    tmp = Path(tempfile.mkdtemp())
    t0 = time.time()
    if a.model == "tiny":
        make_tiny_clip(tmp / "clip")
    else:
        model = open_clip.create_model(a.model, pretrained=None)
        (tmp / "clip").mkdir()
        save_local_dir(model, open_clip.get_model_config(a.model), tmp / "clip")
        del model
    root = make_dataset(tmp / "data", (a.n_train, 64, 64), size=64)
    cfg = dataset_config(root, f"local-dir:{tmp / 'clip'}", device=a.device, batch_size=a.batch, epochs=2,
                         warmup_steps=2, lr=1e-5, num_workers=4 if a.device == "cuda" else 0, threads=0, log_every=2)
    cfg["evaluate"]["device"] = a.device
    emb = tmp / "teacher_text.parquet"
    embed.run(cfg, make_pools(tmp / "pools"), emb)
    print(f"setup + embed {time.time() - t0:.1f}s", flush=True)

    results = {}
    for name, suffix, overrides in [("starft", "", {}), ("ft", "", {}), ("starft", "_noaug", {"augment": False}),
                                    ("starft", "_device_decode", {"decode": "device"})]:
        rc = RunConfig.from_dict({**run_config(cfg["finetune"], name), **overrides})
        out = tmp / "runs" / (name + suffix)
        t = time.time()
        r = train(cfg, rc, 0, emb, out, progress=False)
        ft = [row for row in r["log"] if row["phase"] == "ft"]
        assert all(torch.isfinite(torch.tensor(row["loss"])) for row in ft), ft
        ips = [row["images_per_s"] for row in ft[1:]] or [ft[-1]["images_per_s"]]
        results[out.name] = {"seconds": round(time.time() - t, 1), "steps": r["steps"],
                             "images_per_s_after_first_interval": round(sum(ips) / len(ips), 1),
                             "last_loss": ft[-1]["loss"], "last_reg": ft[-1]["regularizer"]}
        print(out.name, results[out.name], flush=True)

    # resume on CUDA: interrupt after epoch 1, rerun, compare with the uninterrupted run
    rc = RunConfig.from_dict(run_config(cfg["finetune"], "starft"))
    try:
        train(cfg, rc, 0, emb, tmp / "runs" / "cut", progress=False, on_epoch=stop)
    except KeyboardInterrupt:
        pass
    train(cfg, rc, 0, emb, tmp / "runs" / "cut", progress=False)
    a_ = torch.load(tmp / "runs" / "starft" / "checkpoint.pt", weights_only=False)["model"]
    b_ = torch.load(tmp / "runs" / "cut" / "checkpoint.pt", weights_only=False)["model"]
    diff = max((a_[k].float() - b_[k].float()).abs().max().item() for k in a_)
    print(f"resume on {a.device}: max |w_uninterrupted - w_resumed| = {diff:.2e} (bf16/cuDNN need not be bitwise)")

    dc = datasets.check("tiny", "waterbirds", root, templates=cfg["evaluate"]["templates"])
    m = evaluate.run({**eval_config(cfg), "evaluate": {**cfg["evaluate"], "device": a.device}}, {"tiny": dc}, "starft",
                     0, str(tmp / "runs" / "starft" / "checkpoint.pt"))["tiny"]
    print(f"evaluate on {a.device}:", {s: round(v["average"], 1) for s, v in m["splits"].items()})
    if a.device == "cuda":
        results.update(gpu=torch.cuda.get_device_name(), max_memory_GiB=round(torch.cuda.max_memory_allocated() / 2**30, 1))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
