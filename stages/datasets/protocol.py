"""Each target's evaluation protocol, known without its data: the split a table reports, the
classes it is scored among, the published image count of that split, the prompts of its head and
where they come from. The report's data-set table reads `protocol(reader)`; the data check
records the images actually found (data/<dataset>/data_check.json), which a reader of the table
can set beside `images`.
"""

from __future__ import annotations

from . import transfer
from .published_prompts import BENCH, PROMPTS_MD
from .readers import EVAL_SPLITS, STATIC_TEMPLATES, _known, static_classnames

OPEN_CLIP = "open_clip's IMAGENET_CLASSNAMES and OPENAI_IMAGENET_TEMPLATES (= CLIP's, = clip-benchmark's imagenet1k)"

# images of each evaluated split as published (None: the reader reads any tree, e.g. imagefolder).
# ImageNet-R/-A: all their images; ObjectNet: the images of its 113 ImageNet-overlapping classes
# (of 313 classes, 50,000 images), the count WiSE-FT's and FLYP's readers evaluate.
IMAGES: dict[str, dict[str, int]] = {
    "imagenet": {"val": 50_000},
    "imagenet_v2": {"test": 10_000},
    "imagenet_sketch": {"test": 50_889},
    "imagenet_r": {"test": 30_000},
    "imagenet_a": {"test": 7_500},
    "objectnet": {"test": 18_574},
    "waterbirds": {"val": 1_199, "test": 5_794},
    "celeba": {"val": 19_867, "test": 19_962},
    # 9,144 images less 467 of BACKGROUND_Google, less 30 per class for training
    "caltech101": {"test": 8_677 - 101 * transfer.CALTECH_TRAIN_PER_CLASS},
    "flowers102": {"test": 6_149},
    "stanford_cars": {"test": 8_041},
    "sun397": {"test": 397 * 50},   # partition 1's Testing_01.txt
}

# the classes a split is scored among, where fewer than the head's (ImageNet-R/-A restrict the
# logits to theirs; ObjectNet maps the 1000-way head onto its own classes)
SCORED_CLASSES = {"imagenet_r": 200, "imagenet_a": 200, "objectnet": 113}

PROMPT_SOURCE = {
    **{r: OPEN_CLIP for r in ("imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_r",
                              "imagenet_a", "objectnet")},
    "waterbirds": "the released Waterbirds zero-shot template; class names landbird / waterbird",
    "celeba": "four person templates (stages.datasets.celeba); class names dark hair / blond hair",
    "caltech101": f"{BENCH}; the 101 object classes (without background)",
    "flowers102": BENCH,
    "stanford_cars": f"class names {PROMPTS_MD}, templates {BENCH}",
    "sun397": f"class names {PROMPTS_MD}, templates {BENCH}",
    "imagefolder": "class folder names; templates of stages.datasets.imagefolder",
}

SPLIT_NOTE = {
    "imagenet": "ILSVRC-2012 val (its test labels are not public)",
    "caltech101": "all but the first 30 images of each class",
    "sun397": "partition 1 (Testing_01.txt)",
    "objectnet": "the 113 classes that overlap ImageNet, 2-pixel border cropped",
}


def protocol(reader: str) -> dict:
    """The protocol of a reader's reported split(s) with its own class names and templates (a
    config's datasets.NAME.classnames / templates / splits override them: state those instead):
    {"splits", "split_note", "classes" (the head's), "scored_classes", "images" (split ->
    published count, or None), "templates" (count), "prompt_source"}."""
    _known(reader)
    names = static_classnames(reader)
    head = None if names is None else len(names)
    splits = list(EVAL_SPLITS[reader])
    known = IMAGES.get(reader)
    return {"splits": splits, "split_note": SPLIT_NOTE.get(reader, ""),
            "classes": head, "scored_classes": SCORED_CLASSES.get(reader, head),
            "images": None if known is None else {s: known.get(s) for s in splits},
            "templates": len(STATIC_TEMPLATES[reader]()), "prompt_source": PROMPT_SOURCE[reader]}


__all__ = ["IMAGES", "PROMPT_SOURCE", "protocol"]
