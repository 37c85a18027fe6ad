"""The evaluate stage's core: one run (the zero-shot teacher or a fine-tuned checkpoint) on every target.

A run is fine-tuned once on its experiment's training set and evaluated on every target: the
training set itself (role `id`), its distribution shifts, group-shift sets and zero-shot
classification sets, each target a file of its own, all written by one job that loads the model
once. The classifier is the run's linear head when the target shares the training label space
(ImageNet and its shifts), else the zero-shot head of the run's text encoder on the target's class
names and templates; the target's reader restricts (ImageNet-R/-A) or projects (ObjectNet) the
logits. Group-shift sets add worst-group, average and adjusted average. WiSE-FT evaluates
theta = (1 - a) * theta0 + a * theta over a grid of a.
"""

from __future__ import annotations

import torch

from .. import datasets
from ..common.io import versions
from ..common.progress import progress
from ..method.models import autocast_dtype as autocast_dtype_of, load_clip, resolve_device
from ..method.scoring import evaluate_splits, interpolate, make_head
from ..method.zeroshot import LinearHead, zeroshot_weights


def open_target(cfg: dict, data_check: dict, transform) -> dict[str, datasets.ClassificationSet]:
    """Every evaluated split of the target, with the class names and templates its data check
    recorded (the reader's, or the config's overrides)."""
    return {split: datasets.with_overrides(datasets.open(cfg["reader"], cfg["root"], split, transform),
                                           cfg["target"], data_check["classnames"], data_check["templates"])
            for split in cfg["splits"]}


def load_run(cfg: dict, method: str, seed: int, checkpoint: str | None):
    """The run's model (the fine-tuned weights loaded when there is a checkpoint), its zero-shot
    weights theta0 (None without a checkpoint), the checkpoint, and the provenance every record
    of the run shares."""
    device = resolve_device(cfg["evaluate"]["device"])
    torch.manual_seed(seed)
    clip = load_clip(cfg["model"]["name"], cfg["model"]["pretrained"], device=device)
    provenance = {"experiment": cfg["experiment"], "method": method, "seed": seed, "checkpoint": checkpoint,
                  "selected": None, "train_config": None, "model": clip.identity, "versions": versions(),
                  "evaluate": cfg["evaluate"], "precision": cfg["finetune"]["precision"]}
    theta0 = ckpt = None
    if checkpoint is not None:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
        theta0 = {k: v.clone() for k, v in clip.model.state_dict().items()}
        clip.model.load_state_dict(ckpt["model"])
        provenance["train_config"] = ckpt.get("config")
        provenance["selected"] = ckpt.get("selected", {"rule": "last", "epoch": ckpt.get("epoch")})
        # the fine-tuned model is evaluated at the precision it was trained at (a variant may override it)
        provenance["precision"] = ckpt["config"].get("precision", provenance["precision"])
    return clip, device, theta0, ckpt, provenance


def evaluate_target(clip, device, theta0, ckpt, provenance: dict, cfg: dict, target_cfg: dict,
                    data_check: dict, wiseft: bool = False) -> dict:
    """The evaluation record of the loaded run on one target: the run's provenance, target, role,
    the head used ("linear" or "zeroshot"), class, label and group names, and per split `accuracy`
    and `n` (group-shift targets also worst_group, average, adjusted_average, group_accuracy,
    group_size); WiSE-FT adds the curve `wiseft`: [{"alpha", "splits"}]. Leaves the model at the
    run's own weights."""
    ev = cfg["evaluate"]
    model, classnames, templates = clip.model, data_check["classnames"], data_check["templates"]
    targets = open_target(target_cfg, data_check, clip.preprocess_val)
    workers = ev["num_workers"]
    loaders = {split: torch.utils.data.DataLoader(
        t.dataset, batch_size=ev["batch_size"], num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=wiseft and workers > 0) for split, t in targets.items()}
    train_counts = (data_check["splits"].get("train") or {}).get("group_counts")
    first = next(iter(targets.values()))
    result = {**provenance, "target": target_cfg["target"], "reader": target_cfg["reader"],
              "role": target_cfg["role"], "classnames": classnames, "label_names": first.label_names,
              "group_names": first.group_names}
    # a linear head scores only the label space it was trained on; elsewhere the run is
    # evaluated zero-shot with its own text encoder
    head_state = None
    if ckpt is not None and ckpt.get("head") is not None and ckpt.get("classnames") == classnames:
        head_state = ckpt["head"]
    autocast_dtype = autocast_dtype_of(provenance["precision"], device)
    result["head"] = "zeroshot" if head_state is None else "linear"
    if not (wiseft and ckpt is not None):
        head = make_head(model, clip.tokenizer, classnames, templates, device, head_state)
        result["splits"] = evaluate_splits(model, head, targets, loaders, device, train_counts, autocast_dtype)
        return result

    # WiSE-FT: the run's table row is the point at `wiseft_alpha`; the whole curve is kept.
    theta1 = {k: v.clone() for k, v in model.state_dict().items()}
    zs_state = None
    if head_state is not None:  # a linear head is interpolated with the zero-shot head
        model.load_state_dict(theta0)
        zs = LinearHead(zeroshot_weights(model, clip.tokenizer, classnames, templates, device),
                        float(model.logit_scale.detach().exp()))
        zs_state = {k: v.to(device) for k, v in zs.state_dict().items()}
        head_state = {k: v.to(device) for k, v in head_state.items()}
    ft = cfg["finetune"]
    alphas = sorted(set(ft["wiseft_alphas"]) | {ft["wiseft_alpha"]})
    curve = []
    for alpha in progress(alphas, desc=f"WiSE-FT on {target_cfg['target']}"):
        model.load_state_dict(interpolate(theta0, theta1, alpha))
        mixed_head = None if head_state is None else interpolate(zs_state, head_state, alpha)
        h = make_head(model, clip.tokenizer, classnames, templates, device, mixed_head)
        curve.append({"alpha": alpha,
                      "splits": evaluate_splits(model, h, targets, loaders, device, train_counts, autocast_dtype)})
    model.load_state_dict(theta1)
    result["wiseft"] = curve
    result["wiseft_alpha"] = ft["wiseft_alpha"]
    result["splits"] = next(c["splits"] for c in curve if c["alpha"] == ft["wiseft_alpha"])
    return result


def run(cfg: dict, data_checks: dict[str, dict], method: str, seed: int, checkpoint: str | None = None,
        wiseft: bool = False) -> dict[str, dict]:
    """One run on every target of `cfg["targets"]`: {target: its evaluation record}. The model is
    loaded once (a job per target would spend most of its time starting up on small targets)."""
    clip, device, theta0, ckpt, provenance = load_run(cfg, method, seed, checkpoint)
    return {t["target"]: evaluate_target(clip, device, theta0, ckpt, provenance, cfg, t,
                                         data_checks[t["target"]], wiseft)
            for t in cfg["targets"]}
