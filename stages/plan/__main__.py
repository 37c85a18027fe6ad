"""`python -m stages.plan results/imagenet [...] [--configfile my.yaml]`: the bill of the targets
before submitting them (stages.plan.bill), from Snakemake's own dry run in this folder."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pandas as pd

from .. import config as stage_config
from .bill import bill, by_rule, parse_dry_run
from .resources import gpu_rate

# the Snakefile's own configfiles, merged in its order before the user's
DEFAULT_CONFIGS = ("config/synthbirds.yaml", "config/paper.yaml")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m stages.plan", description=__doc__)
    p.add_argument("targets", nargs="+", help="Snakemake targets, e.g. results/imagenet")
    p.add_argument("--configfile", nargs="*", default=[], help="as snakemake's (merged over the defaults)")
    p.add_argument("--jobs", action="store_true", help="also print every job's row")
    a = p.parse_args(argv)
    config = stage_config.load(*DEFAULT_CONFIGS, *a.configfile)
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", *a.targets]
    if a.configfile:
        cmd += ["--configfile", *a.configfile]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    table, totals, fetched = bill(config, parse_dry_run(proc.stdout + proc.stderr))
    rate, source = gpu_rate(config["cluster"])
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(f"# the bill of {' '.join(a.targets)} (what is left to do); GPU {config['cluster']['gpu']}: "
              f"{rate:,.0f} images/s ({source})")
        if a.jobs:
            print(table.round(2).to_string(index=False), end="\n\n")
        print(by_rule(table).round(2).to_string(), end="\n\n")
        print(fetched.assign(gb=(fetched["bytes"] / 1e9).round(2)).drop(columns="bytes").to_string(index=False),
              end="\n\n")
    unknown = f" (+ {totals['downloads_unknown']} of unknown size)" if totals["downloads_unknown"] else ""
    print(f"total: {totals['jobs']} jobs, {totals['gpu_hours']:,.1f} GPU-hours, {totals['cpu_hours']:,.1f} CPU-hours, "
          f"peak memory {totals['peak_mem_gb']:,.0f} GB, disk written {totals['disk_gb']:,.1f} GB, "
          f"downloads {totals['download_gb']:,.1f} GB{unknown}")
    print("(disk written: the runs' checkpoints and the probe's features; each data set takes about its download "
          "once extracted, the archives deleted; a run's resume.pt, ~3x its checkpoint, lives until the run ends)")


if __name__ == "__main__":
    main()
