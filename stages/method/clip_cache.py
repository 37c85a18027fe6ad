"""Where the workflow keeps open_clip's pretrained weights, fetched once before any GPU job.

Rule `fetch_clip` (a local job, on the node that runs Snakemake) downloads a teacher's weights
into `CLIP_CACHE` with open_clip's own download (`fetch_pretrained`); every job that loads the
teacher (`load_clip`) reads that cache, so that no GPU job downloads, and a cluster's compute
nodes need no internet. `local-dir:` models are files already, `hf-hub:` ones open_clip fetches
itself; neither has a fetch job. Torch-free until `fetch_pretrained` runs, so that the Snakefile
can name the marker while it builds the DAG.
"""

from __future__ import annotations

from pathlib import Path

CLIP_CACHE = "data/models/open_clip"                          # open_clip's cache_dir for every job
CLIP_FETCHED = CLIP_CACHE + "/fetched/{model}/{pretrained}.json"   # rule fetch_clip's record of one teacher


def registry_name(name: str) -> str:
    """open_clip's own spelling of a model name (ViT-B/16 -> ViT-B-16)."""
    return name.replace("/", "-")


def fetched_marker(model: dict) -> str | None:
    """The record rule fetch_clip writes for a `model` section ({name, pretrained}), or None where
    nothing is downloaded: a local-dir: or hf-hub: model, no pretrained tag, or a tag that is a
    checkpoint file."""
    name, tag = model["name"], model.get("pretrained")
    if name.startswith(("local-dir:", "hf-hub:")) or tag is None or Path(tag).is_file():
        return None
    return CLIP_FETCHED.format(model=registry_name(name), pretrained=tag)


def fetch_pretrained(name: str, tag: str, cache_dir: str | Path = CLIP_CACHE) -> Path:
    """Download the pretrained weights of open_clip model `name`, tag `tag`, into `cache_dir` the way
    `open_clip.create_model_and_transforms(..., cache_dir=cache_dir)` looks for them (its own
    `download_pretrained`, HF hub first where the tag has both), and return the file. A file
    already there (and, where open_clip knows it, of the right sha256) is not fetched again."""
    from open_clip import pretrained as registry

    cfg = registry.get_pretrained_cfg(registry_name(name), tag)
    if not cfg:
        raise ValueError(f"open_clip has no pretrained weights {tag!r} for model {name!r}")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return Path(registry.download_pretrained(cfg, cache_dir=str(cache_dir)))
