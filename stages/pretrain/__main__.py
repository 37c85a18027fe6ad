"""`python -m stages.pretrain`: pre-train the synthetic world's tiny CLIP (see stages.pretrain.run)."""

from __future__ import annotations

import argparse
import json

from .run import run


def main(argv=None) -> None:
    """The command line: pre-train and save the tiny CLIP (`run`), then print its zero-shot checks."""
    p = argparse.ArgumentParser(description="Pre-train the synthetic world's tiny CLIP and save it as local-dir:.")
    p.add_argument("--dataset-config", required=True, help="JSON of the validated dataset config")
    p.add_argument("--pretrain-set", required=True, help=".npz written by stages.synthetic.world")
    p.add_argument("--out", required=True, help="output folder (local-dir: model)")
    a = p.parse_args(argv)
    cfg = json.loads(a.dataset_config)
    report = run(cfg["data"]["synthetic"], cfg["pretrain"], a.pretrain_set, a.out, cfg["seed"])
    z = report["zeroshot"]
    print(f"pre-trained in {report['train_seconds']:.0f} s; logit scale {report['final_logit_scale']:.1f}; "
          f"zero-shot class {z['class_accuracy']:.1f}% (worst group {z['class_worst_group']:.1f}%), "
          f"scene {z['scene_accuracy']:.1f}%")
    # a species the teacher misreads caps a group; renditions it cannot read leave a shift nothing to keep
    print("zero-shot per SynthBirds species: " + ", ".join(f"{k} {v:.1f}%" for k, v in z["species_accuracy"].items()))
    print("zero-shot on fresh renditions (16 classes, chance 6.25%): "
          + ", ".join(f"{k} {v:.1f}%" for k, v in z["rendition_accuracy"].items()))


if __name__ == "__main__":
    main()
