"""Evaluate stage: worst-group, average and adjusted average accuracy of one run.

A run is the zero-shot teacher or a fine-tuned checkpoint; its classifier is either the zero-shot
head built from the (possibly fine-tuned) text encoder and the class prompts, or the linear head
stored in the checkpoint. WiSE-FT evaluates theta = (1 - a) * theta0 + a * theta over a grid of a.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import data as data_mod
from .io import versions, write_json
from .metrics import group_metrics
from .models import autocast_dtype as autocast_dtype_of, load_clip, resolve_device
from .progress import progress
from .zeroshot import LinearHead, encode_images, zeroshot_weights


@torch.no_grad()
def predict(model, head, loader, device, autocast_dtype=None):
    """Predicted classes with labels and places. `head` maps normalised image features to logits."""
    model.eval()
    feats, y, place = encode_images(model, loader, device, autocast_dtype=autocast_dtype)
    logits = head(feats.to(device)).float().cpu()
    return logits.argmax(dim=1), y, place


def zeroshot_head(model, tokenizer, classnames, templates, device):
    weights = zeroshot_weights(model, tokenizer, classnames, templates, device)
    return lambda feats: feats @ weights.T


def make_head(model, tokenizer, classnames, templates, device, head_state: dict | None):
    """The run's classifier: its own linear head if it has one, else the zero-shot head."""
    if head_state is None:
        return zeroshot_head(model, tokenizer, classnames, templates, device)
    n_classes, dim = head_state["linear.weight"].shape
    head = LinearHead(torch.zeros(n_classes, dim), 1.0).to(device)
    head.load_state_dict(head_state)
    return head.eval()


def interpolate(theta0: dict, theta1: dict, alpha: float) -> dict:
    """WiSE-FT weights (1 - alpha) * theta0 + alpha * theta1 (non-float buffers taken from theta1)."""
    return {k: ((1 - alpha) * theta0[k] + alpha * v) if v.is_floating_point() else v for k, v in theta1.items()}


def evaluate_splits(model, head, loaders: dict, device, n_groups, train_counts, autocast_dtype=None) -> dict:
    out = {}
    for split, loader in loaders.items():
        pred, y, place = predict(model, head, loader, device, autocast_dtype)
        group = data_mod.group_of(y, place)
        out[split] = group_metrics(pred.numpy(), y.numpy(), group.numpy(), n_groups, train_counts)
    return out


def run(dataset_cfg: dict, data_check: dict, method: str, seed: int, checkpoint: str | None = None,
        wiseft: bool = False) -> dict:
    ev = dataset_cfg["evaluate"]
    device = resolve_device(ev["device"])
    torch.manual_seed(seed)
    clip = load_clip(dataset_cfg["model"]["name"], dataset_cfg["model"]["pretrained"], device=device)
    model, classnames, templates = clip.model, dataset_cfg["classnames"], ev["templates"]
    meta = data_mod.read_metadata(dataset_cfg["data"]["root"])
    loaders = {
        split: torch.utils.data.DataLoader(
            data_mod.GroupDataset(dataset_cfg["data"]["root"], split, clip.preprocess_val, meta),
            batch_size=ev["batch_size"], num_workers=0)
        for split in ev["splits"]
    }
    n_groups = len(classnames) * data_mod.N_PLACES
    train_counts = data_check["group_counts"]["train"]
    result = {"dataset": data_check.get("root"), "method": method, "seed": seed,
              "model": clip.identity, "evaluate": ev, "versions": versions(), "checkpoint": checkpoint}

    head_state = None
    precision = dataset_cfg.get("finetune", {}).get("precision", "auto")
    if checkpoint is not None:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
        theta0 = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(ckpt["model"])
        head_state = ckpt.get("head")
        result["train_config"] = ckpt.get("config")
        result["selected"] = ckpt.get("selected", {"rule": "last", "epoch": ckpt.get("epoch")})
        precision = ckpt["config"].get("precision", precision)   # the run's own (a variant may override it)
    # the fine-tuned model is evaluated at the precision it was trained at
    autocast_dtype = autocast_dtype_of(precision, device)
    result["precision"] = precision
    if not (wiseft and checkpoint is not None):
        head = make_head(model, clip.tokenizer, classnames, templates, device, head_state)
        result["splits"] = evaluate_splits(model, head, loaders, device, n_groups, train_counts, autocast_dtype)
        return result

    # WiSE-FT: the run's table row is the point at `wiseft_alpha`; the whole curve is kept.
    theta1 = {k: v.clone() for k, v in model.state_dict().items()}
    zs_state = None
    if head_state is not None:  # a linear head is interpolated with the zero-shot head
        model.load_state_dict(theta0)
        zs = LinearHead(zeroshot_weights(model, clip.tokenizer, classnames, templates, device),
                        float(model.logit_scale.exp()))
        zs_state = {k: v.to(device) for k, v in zs.state_dict().items()}
        head_state = {k: v.to(device) for k, v in head_state.items()}
    ft = dataset_cfg["finetune"]
    alphas = sorted(set(ft["wiseft_alphas"]) | {ft["wiseft_alpha"]})
    curve = []
    for alpha in progress(alphas, desc="WiSE-FT"):
        model.load_state_dict(interpolate(theta0, theta1, alpha))
        mixed_head = None if head_state is None else interpolate(zs_state, head_state, alpha)
        h = make_head(model, clip.tokenizer, classnames, templates, device, mixed_head)
        curve.append({"alpha": alpha, **evaluate_splits(model, h, loaders, device, n_groups, train_counts, autocast_dtype)})
    result["wiseft"] = curve
    result["wiseft_alpha"] = ft["wiseft_alpha"]
    result["splits"] = next({k: v for k, v in c.items() if k != "alpha"} for c in curve if c["alpha"] == ft["wiseft_alpha"])
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Worst-group evaluation of a zero-shot or fine-tuned CLIP.")
    p.add_argument("--dataset-config", required=True, help="JSON of the validated dataset config")
    p.add_argument("--data-check", required=True, help="data check JSON (training group counts)")
    p.add_argument("--method", default="zeroshot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--wiseft", action="store_true", help="also evaluate the WiSE-FT interpolation grid")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        result = run(json.loads(a.dataset_config), json.loads(Path(a.data_check).read_text()),
                     a.method, a.seed, a.checkpoint, a.wiseft)
    except data_mod.DataError as e:
        sys.exit(f"error: {e}")
    write_json(a.out, result)
    for split, m in result["splits"].items():
        print(f"{a.method} seed {a.seed} {split}: worst-group {m['worst_group']:.2f}  "
              f"average {m['average']:.2f}  adjusted {m['adjusted_average']:.2f}")


if __name__ == "__main__":
    main()
