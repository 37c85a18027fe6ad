"""Toy inputs for the tests and the benchmarks, written to a folder in seconds with no download: a
tiny open_clip model (local-dir:), a tiny Waterbirds-layout data set, spurious pools, photo-like
JPEGs, the validated configuration and training job of a toy experiment on them, and a scratch
copy of the workflow to run Snakemake in.

Above the stages in the package's layers (docs/architecture.md): it may import any of them, and
nothing in the pipeline imports it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import torch
import yaml
from PIL import Image

from . import config as stage_config
from .method.models import save_local_dir

REPO = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "prompts")   # what a scratch workflow copies

TINY_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
CLASSNAMES = ["landbird", "waterbird"]
POOLS = {
    "background": ["a photo of a {} in the forest.", "a photo of a {} on a beach.", "a photo of a {} in the snow.",
                   "a photo of a {} over the lake.", "a photo of a {} in a city."],
    "texture": ["a photo of a {} with a striped texture.", "a photo of a furry {}.", "a photo of a {} on a beach."],
}
COLORS = {"land": (90, 140, 60), "water": (60, 90, 170), "landbird": (200, 160, 40), "waterbird": (240, 240, 240)}
TEMPLATES = ["a photo of a {}.", "This is a picture of a {}."]


def make_tiny_clip(folder: str | Path, seed: int = 0, logit_scale: float | None = None) -> str:
    """Save a randomly initialised tiny CLIP in local-dir format; return its model name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_MODEL_CFG)
    if logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(float(np.log(logit_scale)))
    save_local_dir(model, TINY_MODEL_CFG, folder)
    return f"local-dir:{folder}"


def make_dataset(root: str | Path, n_per_split=(16, 8, 8), size: int = 32, seed: int = 0) -> Path:
    """A Waterbirds-layout folder: a coloured bird square on a land or water background."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in enumerate(n_per_split):
        for k in range(n):
            y = k % 2
            place = y if (split == 0 and k % 8) else int(rng.integers(2))  # train mostly correlated
            pixels = np.array(COLORS[["land", "water"][place]], dtype=np.float32) + rng.normal(0, 20, (size, size, 3))
            x0, y0 = rng.integers(0, size // 2, 2)
            pixels[y0:y0 + size // 3, x0:x0 + size // 3] = COLORS[CLASSNAMES[y]]
            name = f"images/{split}_{k:04d}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name)
            rows.append({"img_id": len(rows), "img_filename": name, "y": y, "split": split, "place": place,
                         "place_filename": f"/{['land', 'water'][place]}/x.jpg"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def make_pools(folder: str | Path, pools: dict[str, list[str]] = POOLS) -> list[str]:
    """One describe-stage Parquet file (column `template`) per pool; their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for typ, templates in pools.items():
        path = folder / f"{typ}.descriptions.parquet"
        pd.DataFrame({"template": templates}).to_parquet(path)
        paths.append(str(path))
    return paths


def write_jpegs(folder: Path, n: int, width: int = 500, height: int = 375, seed: int = 0) -> list[Path]:
    """n photo-like JPEGs (quality 90): low-frequency colour fields plus fine texture, so that
    they compress like natural images rather than like noise or flat colour."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
        texture = rng.normal(0, 12, (height, width, 1)).astype(np.float32)
        pixels = np.clip(field + texture, 0, 255).astype(np.uint8)
        path = folder / f"img_{k:04d}.JPEG"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def config(root: str | Path, model_name: str, **finetune) -> dict:
    """A validated configuration of the tiny world: data set and experiment `tiny`, trained on it;
    `finetune` overrides the experiment's finetune section."""
    ft = {"epochs": 2, "batch_size": 8, "lr": 1e-4, "warmup_steps": 1, "lambda": 0.5,
          "num_workers": 0, "threads": 1, "device": "cpu", "log_every": 1}
    ft.update(finetune)
    cfg = {"datasets": {"tiny": {"reader": "waterbirds", "root": str(root), "templates": TEMPLATES}},
           "experiments": {"tiny": {"train": "tiny", "model": {"name": model_name},
                                    "evaluate": {"device": "cpu", "batch_size": 16, "num_workers": 0},
                                    "finetune": ft}}}
    return stage_config.validate(cfg)


def dataset_config(root: str | Path, model_name: str, **finetune) -> dict:
    """The training job of the tiny experiment (what describe, embed and fine-tune read)."""
    return stage_config.train_job(config(root, model_name, **finetune), "tiny")


def eval_config(job: dict, splits=("val", "test"), **finetune) -> dict:
    """What the evaluate rule passes for the tiny experiment's runs on their own training set."""
    return {"experiment": "tiny", "model": job["model"], "evaluate": job["evaluate"],
            "targets": [{"target": "tiny", "role": "id", "reader": job["data"]["reader"],
                         "root": job["data"]["root"], "splits": list(splits)}],
            "finetune": {"precision": "auto", **finetune}}


def tiny_world(tmp: str | Path, **finetune) -> tuple[dict, str]:
    """Model, data, pools and teacher embeddings in `tmp`: (dataset config, embeddings path)."""
    from .embed import run as embed

    tmp = Path(tmp)
    model = make_tiny_clip(tmp / "clip")
    root = make_dataset(tmp / "data")
    cfg = dataset_config(root, model, **finetune)
    out = tmp / "embeddings" / "teacher_text.parquet"
    embed.run(cfg, make_pools(tmp / "pools"), out)
    return cfg, str(out)


def make_workdir(work: str | Path, overrides: dict) -> Path:
    """A scratch copy of the workflow (Snakefile, rules, configs, prompts) in `work`, with
    `overrides` written as override.yaml for `--configfile`."""
    work = Path(work)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name)
        elif src.exists():
            shutil.copy(src, work / name)
    (work / "override.yaml").write_text(yaml.safe_dump(overrides))
    return work
