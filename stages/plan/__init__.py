"""The plan of a workflow's jobs before they run, above the stages it sizes (it reads their
configuration, never runs them; no torch):

- `model_size`: a CLIP's parameters and compute per image from its open_clip configuration;
- `resources`: each finetune, probe, evaluate and embed job's SLURM request (CPUs, GPUs, memory,
  time) from its own configuration and the config's `cluster` section, refused when no node holds it;
- `bill`: a target's GPU-hours, CPU-hours, peak memory, disk written and downloads, per job and in
  total, over Snakemake's own dry run;
- `__main__`: the command line, `python -m stages.plan results/imagenet`.
"""
