"""The export stage's core: one run's weights written as a folder that open_clip loads.

    <out>/open_clip_config.json        model_cfg + preprocess_cfg (open_clip's), starft (the run)
    <out>/open_clip_model.safetensors  the towers, as the evaluate stage scores them
    <out>/linear_head.safetensors      a linear head (lp, ft, lpft, starft_ce), if the run has one
    <out>/README.md                    the model card
    (+ a HF tokenizer's files when the model's text_cfg names one)

The folder is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from ..common.io import atomic_dir, sha256_file, versions
from ..method.models import save_local_dir
from . import card, layout
from .weights import run_weights


def export(cfg: dict, method: str, seed: int, checkpoint: str | Path, out: str | Path,
           data_check: dict | None = None, eval_dir: str | Path | None = None) -> Path:
    """Export run (`method`, `seed`) from its checkpoint (for `wiseft`: the `finetune.wiseft_of`
    run's) into `out`. `cfg`: experiment, model {name, pretrained}, device, data {dataset, reader}
    and, for wiseft, finetune {wiseft_alpha, wiseft_of}."""
    weights = run_weights(cfg, method, checkpoint, data_check)
    records = card.read_evals(eval_dir, method, seed, weights.alpha)
    model = weights.clip.model
    model_cfg = layout.model_config(cfg["model"]["name"], model)
    ckpt = weights.ckpt
    meta = {"experiment": cfg["experiment"], "method": method, "base_method": ckpt.get("method"), "seed": seed,
            "data": cfg.get("data") or {}, "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
            "selected": ckpt.get("selected", {"rule": "last", "epoch": ckpt.get("epoch")}),
            "teacher": ckpt["teacher"], "train_config": ckpt["config"], "tokenizer": layout.tokenizer_info(model_cfg),
            "wiseft_alpha": weights.alpha, "wiseft_of": cfg["finetune"]["wiseft_of"] if weights.alpha is not None else None,
            "head": None, "versions": versions()}
    trained = meta["wiseft_of"] if method == "wiseft" else method
    if ckpt.get("name", trained) != trained or ckpt.get("seed", seed) != seed:
        raise layout.ExportError(f"{checkpoint}: the checkpoint of run {ckpt.get('name')} seed {ckpt.get('seed')}, "
                                 f"exported as {method} seed {seed}")
    if weights.head is not None:
        meta["head"] = {"file": layout.HEAD_FILE, "classnames": weights.classnames,
                        "logits": "normalize(encode_image(x)) @ weight.T + bias"}
    with atomic_dir(out) as tmp:
        save_local_dir(model, model_cfg, tmp, layout.preprocess_config(model), extra=meta)
        if weights.head is not None:
            save_file(weights.head, str(tmp / layout.HEAD_FILE), metadata={"classnames": json.dumps(weights.classnames)})
        layout.save_tokenizer(weights.clip.tokenizer, model_cfg, tmp)
        (tmp / "README.md").write_text(card.model_card(meta, records, eval_dir))
    return Path(out)
