"""The evaluate stage's core: one run (the zero-shot teacher or a fine-tuned checkpoint) on its targets.

A run is fine-tuned once on its experiment's training set and evaluated on every target: the
training set itself (role `id`), its distribution shifts, group-shift sets and zero-shot
classification sets, each target a file of its own. One job loads the model once and scores the
targets it is given (the experiment's, or those a report asks for). The classifier is the run's
linear head when the target shares the training label space (ImageNet and its shifts), else the
zero-shot head of the run's text encoder on the target's class names and templates; the target's
reader restricts (ImageNet-R/-A) or projects (ObjectNet) the logits. Group-shift sets add
worst-group, average and adjusted average. WiSE-FT evaluates theta = (1 - a) * theta0 + a * theta
over a grid of a.

Nothing is computed twice in a job: a zero-shot head is built once per (weights, class names,
templates) and shared by the targets that ask for it (ImageNet's 1,000 x 80 prompts serve ImageNet
and its five shifts), and WiSE-FT scores every alpha on each decoded batch (a target's images are
decoded once, not once per alpha).

With the experiment's teacher-text table (`cfg["embeddings"]`), every split record also holds its
`spuriosity_drift` (stages.method.drift): the teacher's and the run's distributions over the
spurious captions on the split's images, the teacher's image features computed on the same decoded
batches, the run's text features on the captions once per weights point.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .. import datasets
from ..common.io import versions
from ..method.drift import DriftMeter, SpuriousCaptions
from ..method.models import autocast_dtype as autocast_dtype_of
from ..method.models import load_clip, resolve_device
from ..method.scoring import evaluate_points, interpolate, make_head, mix
from ..method.teacher_text import read_embeddings
from ..method.zeroshot import LinearHead, encode_texts, zeroshot_weights

THETA0 = "theta0"   # the scoring point of the zero-shot weights (WiSE-FT mixes a linear head with its head)


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
        provenance["kl_target_superclass_share"] = ckpt.get("kl_target_superclass_share")
        # the fine-tuned model is evaluated at the precision it was trained at (a variant may override it)
        provenance["precision"] = ckpt["config"].get("precision", provenance["precision"])
    return clip, device, theta0, ckpt, provenance


class Weights:
    """The model's weights at a scoring point: None, the run's own (theta1); THETA0, the zero-shot
    model's; a float alpha, WiSE-FT's (1 - alpha) * theta0 + alpha * theta1. Written in place into
    the model's tensors and only where the point changes: WiSE-FT changes points on every batch, and
    holds theta0 and theta1 beside the model (three copies of the weights, plus one tensor's
    temporary). Without theta0 (no WiSE-FT) the model stays at its own weights.

    `load(point, image_only=True)` moves only the image tower (`visual.*`, all that encode_image
    reads): per batch the text tower, whose token embedding is most of a tiny CLIP, is not copied.
    """

    def __init__(self, model, theta0: dict | None):
        self.model, self.theta0 = model, theta0
        self.theta1 = None if theta0 is None else {k: v.clone() for k, v in model.state_dict().items()}
        self.state = model.state_dict()   # detached views of the model's own tensors, written in place
        keys = list(self.state)
        image = [k for k in keys if k.startswith("visual.")] if hasattr(model, "visual") else keys
        self.parts = {"image": image, "text": [k for k in keys if k not in set(image)]}
        self.points = {part: None for part in self.parts}

    @torch.no_grad()
    def load(self, point, image_only: bool = False) -> None:
        """Write the weights of scoring `point` into the model, in place, for each part not already
        at it; `image_only`: the image tower only."""
        state = self.state
        for part in ("image",) if image_only else tuple(self.parts):
            if self.points[part] == point:
                continue
            for k in self.parts[part]:
                if point is None:
                    state[k].copy_(self.theta1[k])
                elif point == THETA0:
                    state[k].copy_(self.theta0[k])
                else:
                    state[k].copy_(mix(self.theta0[k], self.theta1[k], point))
            self.points[part] = point


class Heads:
    """The job's classifier heads, each built once: a zero-shot head per (weights, class names,
    templates), the run's linear head (WiSE-FT: mixed with the zero-shot model's head) per point."""

    def __init__(self, clip, device, weights: Weights):
        self.clip, self.device, self.weights = clip, device, weights
        self.cache: dict = {}

    def get(self, point, classnames: list[str], templates: list[str], head_state: dict | None):
        """The head at `point`: the run's linear head `head_state` (mixed
        at alpha with the zero-shot model's head for WiSE-FT), or None for the zero-shot head."""
        key = (point, tuple(classnames), tuple(templates), head_state is not None)
        if key not in self.cache:
            if head_state is not None and point is not None:
                head_state = interpolate(self.zeroshot_linear(classnames, templates),
                                         {k: v.to(self.device) for k, v in head_state.items()}, point)
            self.weights.load(point)   # the zero-shot head reads the text encoder at the point
            self.cache[key] = make_head(self.clip.model, self.clip.tokenizer, classnames, templates, self.device,
                                        head_state)
        return self.cache[key]

    def zeroshot_linear(self, classnames: list[str], templates: list[str]) -> dict:
        """The zero-shot model's head as a linear head's state (what fine-tuning's head started from)."""
        key = (THETA0, tuple(classnames), tuple(templates), "linear")
        if key not in self.cache:
            self.weights.load(THETA0)
            model = self.clip.model
            zs = LinearHead(zeroshot_weights(model, self.clip.tokenizer, classnames, templates, self.device),
                            float(model.logit_scale.detach().exp()))
            self.cache[key] = {k: v.to(self.device) for k, v in zs.state_dict().items()}
        return self.cache[key]

    def spurious_text(self, point, captions: SpuriousCaptions) -> torch.Tensor:
        """g(s): the run's text features [K, D] of the spurious captions at `point`, once per job."""
        key = (point, "spurious")
        if key not in self.cache:
            self.weights.load(point)
            self.cache[key] = encode_texts(self.clip.model, self.clip.tokenizer, captions.texts, self.device)
        return self.cache[key]


def teacher_encoder(clip, theta0: dict | None):
    """The teacher's image encoder for the drift, and theta0 as views of its weights (no second
    copy): None for a zero-shot run, whose own image features are the teacher's."""
    if theta0 is None:
        return None, None
    teacher = copy.deepcopy(clip.model).eval()
    teacher.load_state_dict(theta0)
    return (lambda images: F.normalize(teacher.encode_image(images).float(), dim=-1)), teacher.state_dict()


def evaluate_target(clip, device, ckpt, provenance: dict, cfg: dict, target_cfg: dict, data_check: dict,
                    heads: Heads, alphas: list[float] | None = None, captions: SpuriousCaptions | None = None,
                    teacher=None) -> dict:
    """The evaluation record of the loaded run on one target: the run's provenance, target, role,
    the head used ("linear" or "zeroshot"), class, label and group names, and per split `accuracy`
    and `n` (group-shift targets also worst_group, average, adjusted_average, group_accuracy,
    group_size); with WiSE-FT's `alphas`, the curve `wiseft`: [{"alpha", "splits"}], every alpha
    scored on each decoded batch. With the experiment's spurious `captions`, each split's (and each
    alpha's) metrics add `spuriosity_drift` (stages.method.drift; `teacher`: the teacher's image
    encoder, None for a zero-shot run). Leaves the model at the run's own weights."""
    ev = cfg["evaluate"]
    classnames, templates = data_check["classnames"], data_check["templates"]
    targets = open_target(target_cfg, data_check, clip.preprocess_val)
    loaders = {split: torch.utils.data.DataLoader(
        t.dataset, batch_size=ev["batch_size"], num_workers=ev["num_workers"], pin_memory=device.type == "cuda")
        for split, t in targets.items()}
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
    points = alphas or [None]
    by_point = {p: heads.get(p, classnames, templates, head_state) for p in points}
    load = (lambda point: heads.weights.load(point, image_only=True)) if alphas else None
    drift = None
    if captions is not None:
        drift = DriftMeter(captions, {p: heads.spurious_text(p, captions) for p in points},
                           captions.masks(classnames, first.label_names), teacher, device)
    scores = evaluate_points(clip.model, by_point, targets, loaders, device, train_counts, load, autocast_dtype,
                             drift)
    heads.weights.load(None)
    if not alphas:
        result["splits"] = scores[None]
        return result
    # WiSE-FT: the run's table row is the point at `wiseft_alpha`; the whole curve is kept.
    alpha = cfg["finetune"]["wiseft_alpha"]
    result["wiseft"] = [{"alpha": a, "splits": scores[a]} for a in alphas]
    result["wiseft_alpha"] = alpha
    result["splits"] = scores[alpha]
    return result


def run(cfg: dict, data_checks: dict[str, dict], method: str, seed: int, checkpoint: str | None = None,
        wiseft: bool = False) -> dict[str, dict]:
    """One run on every target of `cfg["targets"]`: {target: its evaluation record}. The model is
    loaded once and each head built once (a job per target would spend most of its time starting
    up on small targets, and rebuild the heads the targets share)."""
    clip, device, theta0, ckpt, provenance = load_run(cfg, method, seed, checkpoint)
    alphas = None
    if wiseft and ckpt is not None:
        ft = cfg["finetune"]
        alphas = sorted(set(ft["wiseft_alphas"]) | {ft["wiseft_alpha"]})
    captions = teacher = None
    if cfg.get("embeddings"):
        emb = read_embeddings(cfg["embeddings"], expected_fingerprint=clip.identity["fingerprint"])
        captions = SpuriousCaptions.from_embeddings(emb, cfg["embeddings"])
        teacher, theta0 = teacher_encoder(clip, theta0)
    heads = Heads(clip, device, Weights(clip.model, theta0 if alphas else None))
    return {t["target"]: evaluate_target(clip, device, ckpt, provenance, cfg, t, data_checks[t["target"]], heads,
                                         alphas, captions, teacher)
            for t in cfg["targets"]}
