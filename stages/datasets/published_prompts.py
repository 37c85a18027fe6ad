"""CLIP's published class names and prompt templates of the zero-shot classification sets.

Vendored, unchanged, as data (clip_prompts/):
- clip_benchmark.json: the entries of clip-benchmark 1.6.2's `en_classnames.json` and
  `en_zeroshot_classification_templates.json` that the readers use (Caltech101 and Flowers102
  class names; the four sets' templates). tests/test_transfer_sets.py compares them with the
  installed package's files when clip-benchmark is importable (`pip install --no-deps
  clip-benchmark==1.6.2`: its declared dependencies, scikit-learn, transformers, pycocoevalcap and
  webdataset, are not needed to read two JSON files, so it is not a dependency of this project).
- openai_clip.json: Stanford Cars' and SUN397's class names from CLIP's data/prompts.md, which
  clip-benchmark does not ship (it names those classes from the data set's own files, as the
  readers here check: `transfer.open_stanford_cars`, `transfer.open_sun397`).

ImageNet's 1000 names and 80 templates are open_clip's, which equal clip-benchmark's `imagenet1k`
entries exactly (the same test checks it).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).with_name("clip_prompts")
BENCH_VERSION = "1.6.2"
BENCH = f"clip-benchmark {BENCH_VERSION} (en_classnames.json, en_zeroshot_classification_templates.json)"
PROMPTS_MD = "CLIP's data/prompts.md"


@functools.cache
def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def bench_classnames(key: str) -> list[str]:
    """clip-benchmark's class names of one data set (its `en_classnames.json` key)."""
    return list(_load("clip_benchmark.json")["en_classnames.json"][key])


def bench_templates(key: str) -> list[str]:
    """clip-benchmark's templates of one data set, "{c}" written as the pipeline's "{}"."""
    return [t.replace("{c}", "{}")
            for t in _load("clip_benchmark.json")["en_zeroshot_classification_templates.json"][key]]


def clip_classnames(key: str) -> list[str]:
    """CLIP's class names from data/prompts.md ("StanfordCars", "SUN397")."""
    return list(_load("openai_clip.json")["classes"][key])
