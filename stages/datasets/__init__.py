"""Readers for the published on-disk layouts of the data sets the paper evaluates on.

    from stages import datasets
    ds = datasets.open("imagenet_r", "data/imagenet-r", "test", transform=preprocess)
    ds.dataset[0]        # (image, label, attribute or -1, index)
    ds.predict(logits)   # labels from head logits (restricted to ImageNet-R's 200 classes)

Opening checks the layout and raises DatasetLayoutError naming the folder. The tables of readers,
splits, class names and templates are `readers.py`'s (where a new data set is added); `base.py`
holds the one contract: ClassificationSet, its ImageList of samples, the group formula and the
errors of bad data. `published_prompts.py` reads CLIP's class names and
templates (vendored in clip_prompts/); `protocol.py` states each target's protocol (split, classes,
images, templates and their source) for the report.

`python -m stages.datasets check ...` (datacheck.py) opens every split of a configured data set and
writes its data check record.
"""

from .base import (ClassificationSet, DataError, DatasetConfigError, DatasetLayoutError, DatasetMissing, ImageList,
                   group_index, group_parts)
from .readers import (EVAL_SPLITS, READERS, SPLITS, STATIC_CLASSNAMES, STATIC_TEMPLATES, open, static_classnames,
                      static_templates)
from .datacheck import check, with_overrides

__all__ = ["READERS", "SPLITS", "EVAL_SPLITS", "STATIC_CLASSNAMES", "ClassificationSet", "ImageList",
           "DataError", "DatasetLayoutError", "DatasetMissing", "DatasetConfigError", "group_index", "group_parts",
           "open", "static_classnames", "static_templates", "STATIC_TEMPLATES",
           "check", "with_overrides"]
