"""Command line of the linear probe's job: one probe per experiment and probe configuration, read
by every seed of lp and LP-FT (the `probe` rule; docs/finetune.md).

    python -m stages.finetune.probe_cli --dataset-config JSON --run-config JSON --out data/<experiment>/probe/<id>/probe.pt

`--run-config` is probe_config.probe_job_config: the probe's keys (L2 grid, precision, training
split) and how to compute it (encoding batch, workers, device, threads). The start of the fit is
the teacher's zero-shot head (class prompts of `evaluate.templates`), computed here from the
teacher, so that the job does not depend on the spurious pools.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> None:
    """The command line: fit the probe from the teacher's zero-shot head and write the probe file."""
    p = argparse.ArgumentParser(prog="python -m stages.finetune.probe_cli",
                                description="Fit the linear probe of lp and LP-FT once, for every seed.")
    p.add_argument("--dataset-config", required=True, help="JSON of an experiment's training job (stages.config.train_job)")
    p.add_argument("--run-config", required=True, help="JSON of the probe's run configuration")
    p.add_argument("--out", required=True, help="the probe file to write")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the run configuration's)")
    a = p.parse_args(argv)

    import torch

    from ..datasets import DataError, DatasetConfigError
    from ..method.models import autocast_dtype, load_clip, resolve_device
    from ..method.zeroshot import zeroshot_weights
    from .linear_probe import build_probe, save_probe
    from .runs import FinetuneConfigError, RunConfig

    try:
        dataset_cfg, cfg = json.loads(a.dataset_config), RunConfig.from_dict(json.loads(a.run_config))
        if a.threads or cfg.threads:
            torch.set_num_threads(a.threads or cfg.threads)
        device = resolve_device(cfg.device)
        clip = load_clip(dataset_cfg["model"]["name"], dataset_cfg["model"].get("pretrained"), device=device)
        teacher = clip.model.eval().requires_grad_(False)
        tau0 = float(teacher.logit_scale.exp())
        with torch.no_grad():
            weight0 = tau0 * zeroshot_weights(teacher, clip.tokenizer, dataset_cfg["classnames"],
                                              dataset_cfg["evaluate"]["templates"], device).float()
        bias0 = torch.zeros(len(weight0), device=device)
        record = build_probe(clip, teacher, dataset_cfg, cfg, device, autocast_dtype(cfg.precision, device),
                             weight0, bias0)
        save_probe(a.out, record)
    except (FinetuneConfigError, DataError, DatasetConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {a.out} (l2 {record['l2']:g}, {record['holdout']['size']} held-out training images)")


if __name__ == "__main__":
    main()
