"""The linear probe's driver (lp, and LP-FT's first stage): encode the teacher's features of the
training split once, fit the probe of module `probe` on all but a held-out slice of it, choose
the L2 strength on that slice (`build_probe`), write it (`save_probe`, the `probe` rule's job,
module `probe_cli`) and make it a run's head (`apply_probe`, from the file or fitted in the run).

The features: un-augmented images (the evaluation transform) through the frozen teacher, batched,
without gradients, under the run's precision (bf16 autocast on CUDA by default), L2-normalised in
float32 and stored as float16 on the device: 2 bytes x 512 per image, 1.31 GB for ImageNet's
1,281,167 training images (float32 would be 2.62 GB, the float64 of the former full-batch fit
5.2 GB), with int64 labels (10 MB). The held-out rows are written to the end of the same buffer,
so the fit's and the slice's features are two views of it, never a copy.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..common.io import atomic_path, sha256_file, versions
from ..common.progress import progress
from ..method.models import autocast
from . import probe
from .probe_config import probe_config, probe_id
from .runs import FinetuneConfigError, RunConfig
from .setup import Run, make_loader, uint8_split

FORMAT = 1


@torch.no_grad()
def encode_features(model, loader, normalize, rows: np.ndarray, device, autocast_dtype,
                    desc: str = "linear-probe features") -> torch.Tensor:
    """float16 [N, D] normalised image features on `device`, sample i written to row rows[i]."""
    rows_t = torch.from_numpy(rows)
    feats, start = None, 0
    for images, *_ in progress(loader, desc=desc, leave=False):
        with autocast(device, autocast_dtype):
            f = model.encode_image(normalize(images))
        f = F.normalize(f.float(), dim=-1).to(torch.float16)
        if feats is None:
            feats = torch.empty(len(rows), f.shape[1], dtype=torch.float16, device=device)
        feats[rows_t[start:start + len(f)].to(device)] = f
        start += len(f)
    if start != len(rows):
        raise RuntimeError(f"the loader gave {start} images of {len(rows)}")
    return feats


def classnames_hash(classnames) -> str:
    """A short hash of the class names a probe was fitted for."""
    return hashlib.sha256(json.dumps(list(classnames)).encode()).hexdigest()[:16]


def build_probe(clip, teacher, dataset_cfg: dict, cfg: RunConfig, device, autocast_dtype, weight0, bias0,
                verbose: bool = True) -> dict:
    """The probe of run configuration `cfg` (keys of probe_config.PROBE_KEYS, the encoding batch and
    workers): encode the training split once, hold out a class-stratified slice of it
    (probe.holdout_split, fixed seed), fit one probe per L2 strength on the rest from (weight0,
    bias0) and keep the one with the best held-out accuracy. Returns the probe's record (weight and
    bias in float32 on the CPU, the fits, the slice, the teacher and data it comes from)."""
    split = cfg.train_split
    images, normalize, sample_bytes = uint8_split(dataset_cfg, split, clip, device, "the linear probe (lp, lpft)")
    labels = images.labels_and_attributes()[0]
    fit_idx, held_idx = probe.holdout_split(labels)
    order = np.concatenate([fit_idx, held_idx])
    rows = np.empty(len(labels), dtype=np.int64)
    rows[order] = np.arange(len(labels))                  # sample i -> its row: fit rows first, then the slice
    loader = make_loader(images.dataset, cfg.batch_size, cfg.num_workers, device,
                         "the linear probe's features", sample_bytes)
    feats = encode_features(teacher, loader, normalize, rows, device, autocast_dtype, f"linear-probe features ({split})")
    y = torch.from_numpy(labels[order]).to(device)
    n_fit = len(fit_idx)
    best, fits = probe.fit_probe(feats[:n_fit], y[:n_fit], feats[n_fit:], y[n_fit:], weight0, bias0, cfg.lp_l2_grid)
    record = {
        "format": FORMAT, "id": probe_id(cfg.as_dict()), "config": probe_config(cfg.as_dict()),
        "weight": best.weight.float().cpu(), "bias": best.bias.float().cpu(), "l2": best.l2,
        "fits": [f.record() for f in fits],
        "holdout": {"split": split, "seed": probe.HOLDOUT_SEED, "fraction": probe.HOLDOUT_FRACTION,
                    "size": len(held_idx), "fit_size": n_fit, "indices_sha256": probe.indices_hash(held_idx)},
        "features": {"n": len(labels), "dim": int(feats.shape[1]), "dtype": "float16",
                     "bytes": feats.numel() * feats.element_size()},
        "teacher": clip.identity, "classnames_sha256": classnames_hash(dataset_cfg["classnames"]),
        "data": {k: dataset_cfg["data"][k] for k in ("dataset", "reader", "root")}, "versions": versions(),
    }
    if verbose:
        unconverged = [f.l2 for f in fits if not f.converged]
        print(f"linear probe: l2 {best.l2:g} (accuracy {best.holdout_accuracy:.2f} on {len(held_idx)} held-out "
              f"training images) of {len(fits)} strengths, fitted on {n_fit} images"
              + (f"; not converged in {probe.MAX_ITER} iterations at l2 {unconverged}" if unconverged else ""),
              file=sys.stderr)
    return record


def save_probe(path: str | Path, record: dict) -> None:
    """Write a probe record atomically (its folder made)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def run_record(record: dict, path: str | Path | None) -> dict:
    """What a run's checkpoint keeps of its probe: all but the weights, and the file it came from."""
    out = {k: v for k, v in record.items() if k not in ("weight", "bias", "versions")}
    out["file"] = None if path is None else str(path)
    out["file_sha256"] = None if path is None else sha256_file(path)
    return out


def load_probe(path: str | Path, run: Run) -> dict:
    """The probe file of the `probe` rule, refused (FinetuneConfigError naming what differs) unless
    it was fitted for this run: same teacher, class names, data and probe configuration."""
    record = torch.load(path, map_location="cpu", weights_only=False)
    expected = {"teacher": run.clip.identity["fingerprint"], "classnames": classnames_hash(run.dataset_cfg["classnames"]),
                "data": {k: run.dataset_cfg["data"][k] for k in ("dataset", "reader", "root")},
                "config": probe_config(run.cfg.as_dict())}
    found = {"teacher": record["teacher"]["fingerprint"], "classnames": record["classnames_sha256"],
             "data": record["data"], "config": record["config"]}
    differ = [k for k in expected if expected[k] != found[k]]
    if differ:
        raise FinetuneConfigError(f"linear probe {path}: fitted for another {', '.join(differ)} "
                                  f"({', '.join(f'{k}: {found[k]} != {expected[k]}' for k in differ)}); "
                                  f"rerun its rule (snakemake {path})")
    return record


def apply_probe(run: Run, record: dict, path: str | Path | None) -> None:
    """Make the probe the run's head; record its identity and its fits in the run."""
    linear = run.head.linear
    with torch.no_grad():
        linear.weight.copy_(record["weight"])
        linear.bias.copy_(record["bias"])
    run.probe = run_record(record, path)
    run.log += [{"phase": "lp", "step": f["iterations"], "epoch": 0, "loss": f["objective"],
                 "loss_ft": f["cross_entropy"], "l2": f["l2"], "holdout_accuracy": f["holdout_accuracy"]}
                for f in record["fits"]]


def fit_linear_probe(run: Run, probe_file: str | Path | None = None) -> None:
    """lp, and LP-FT's first stage: the head becomes the probe of `probe_file` (the `probe` rule's
    output, shared by every seed), or, without one, the probe fitted here (every rank the same)."""
    if probe_file is not None:
        record = load_probe(probe_file, run)
    else:
        linear = run.head.linear
        record = build_probe(run.clip, run.teacher, run.dataset_cfg, run.cfg, run.ctx.device, run.autocast_dtype,
                             linear.weight, linear.bias, verbose=run.ctx.is_main)
    apply_probe(run, record, probe_file)
