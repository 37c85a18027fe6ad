"""Pre-flight checks: what would stop a GPU job, found before any GPU job starts.

A cluster run queues its GPU jobs long before they start; a misspelt model, a batch larger than
the training split or a missing describe environment would each fail only once a job gets its GPU.
So, each problem one line naming the config key:

- `model_problems`: the teacher against open_clip's own registry (the Snakefile, at parse time:
  a dry run fails), with the closest names as a suggestion;
- `schedule_problems`: every run's batch, warm-up and steps against the training split's image
  count in the data check and the process count (rule `preflight`, a local job between the data
  check and the experiment's probe and fine-tuning jobs; a synthetic world's sizes are known at
  parse time and checked there, workflow/rules/finetune.smk);
- `describe_problems`: the interpreter of a vLLM describe job (rule `preflight_describe`, before
  the describe job);
- and the teacher's weights, downloaded once into the workflow's cache (rule `fetch_clip`,
  stages/method/clip_cache.py), so that no GPU job downloads.

`python -m stages.preflight schedule|describe|fetch-clip ...` runs the rules' part.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

from . import config as stage_config

LOCAL_DIR, HF_HUB = "local-dir:", "hf-hub:"
# folders of local-dir: models a rule writes (the pretrain rule's tiny CLIP, an exported run)
_GENERATED_MODELS = (re.escape(stage_config.WORLD_CLIP).replace(re.escape("{world}"), "[^/]+"),
                     re.escape(stage_config.RUN_DIR + "/export").replace(re.escape("{experiment}"), "[^/]+")
                     .replace(re.escape("{method}"), "[^/]+").replace(re.escape("{seed}"), r"\d+"))


def _suggest(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def model_problem(model: dict, key: str) -> str | None:
    """What is wrong with one `model` section ({name, pretrained}) at config key `key`, or None.

    open_clip names are checked against `open_clip.list_models()` and their pretrained tag against
    the model's tags in `open_clip.list_pretrained()` (case and -/_ as open_clip folds them), or an
    existing checkpoint file; `hf-hub:` names are taken as they are (the hub decides); a
    `local-dir:` folder must exist or be one a rule writes."""
    import open_clip

    name, tag = model["name"], model.get("pretrained")
    if name.startswith(HF_HUB):
        return None
    if name.startswith(LOCAL_DIR):
        folder = name[len(LOCAL_DIR):]
        if Path(folder).is_dir() or any(re.fullmatch(p, folder.rstrip("/")) for p in _GENERATED_MODELS):
            return None
        return (f"config key {key}.name: the local-dir: folder {folder} does not exist and no rule writes it "
                f"(an open_clip model folder: open_clip_config.json and its weights)")
    arch = name.replace("/", "-")   # open_clip's own spelling of ViT-B/16
    if arch not in open_clip.list_models():
        return (f"config key {key}.name: {name!r} is not an open_clip model (open_clip.list_models())"
                + _suggest(arch, open_clip.list_models()))
    if tag is None or Path(tag).is_file():
        return None
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not open_clip.pretrained.is_pretrained_cfg(arch, tag):
        return (f"config key {key}.pretrained: {tag!r} is not a pretrained tag of open_clip model {name} "
                f"(known: {', '.join(tags) or 'none'})" + _suggest(tag, tags))
    return None


def model_problems(config: dict) -> list[str]:
    """`model_problem` of every experiment of a validated config."""
    problems = []
    for name, e in config["experiments"].items():
        problem = model_problem(e["model"], f"experiments.{name}.model")
        if problem:
            problems.append(problem)
    return problems


def schedule_problems(experiment: str, runs: dict[str, dict], data_check: dict, split: str,
                      variants: dict[str, dict] | None = None) -> list[str]:
    """Every run (name -> resolved run configuration, stages.finetune.runs.run_config) whose batch,
    warm-up or steps do not fit the `split` images the data check counted, split over the run's
    processes (`check_schedule`). `variants` (finetune.variants): a key a variant sets is named
    as the variant's."""
    from .finetune.runs import FinetuneConfigError, RunConfig, check_schedule

    n = (data_check["splits"].get(split) or {}).get("n_images")
    key = f"config key experiments.{experiment}.finetune"
    if n is None:
        return [f"{key}.train_split: the data check of {data_check.get('dataset', 'the training set')} has no "
                f"split {split!r} (it has {', '.join(data_check['splits']) or 'none'})"]
    problems = []
    for name, cfg in runs.items():
        run = RunConfig.from_dict(cfg)
        try:
            check_schedule(run, n, run.processes)
        except FinetuneConfigError as e:
            message = str(e)
            key = re.match(r"finetune\.(\w+)", message)
            if key and key[1] in (variants or {}).get(name, {}):
                message = f"finetune.variants.{name}.{message[len('finetune.'):]}"
            plural = "es" if run.processes != 1 else ""
            problems.append(f"config key experiments.{experiment}.{message} (run {name}, {run.processes} "
                            f"process{plural})")
    return problems


def describe_problems(experiment: str, describe: dict) -> list[str]:
    """The describe job's interpreter, when it runs in an environment of its own (backend vllm):
    it must exist (python -m stages.describe env cpu|gpu builds the default one)."""
    from .describe.checks import effective

    params = effective(describe)
    python = params.get("python")
    if params["backend"] != "vllm" or python is None or Path(python).exists():
        return []
    return [f"config key experiments.{experiment}.describe.python: the describe environment's interpreter {python} "
            "does not exist: build it with `python -m stages.describe env gpu` (or cpu), or set describe.python"]


def main(argv: list[str] | None = None) -> None:
    """The rules' command line: `schedule` (rule preflight), `describe` (rule preflight_describe) and
    `fetch-clip` (rule fetch_clip); each writes `--out` (a JSON record) only when every check passes, else prints one line per
    problem and exits 1."""
    p = argparse.ArgumentParser(prog="python -m stages.preflight", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("schedule", help="the runs' batch, warm-up and steps against the data check")
    s.add_argument("--experiment", required=True)
    s.add_argument("--runs", required=True, help="JSON: run name -> resolved run configuration")
    s.add_argument("--data-check", required=True)
    s.add_argument("--split", required=True, help="the training split (finetune.train_split)")
    s.add_argument("--variants", default="{}", help="JSON: finetune.variants (to name a key a variant sets)")
    s.add_argument("--out", required=True)
    f = sub.add_parser("fetch-clip", help="download a teacher's open_clip weights into the workflow's cache")
    f.add_argument("--name", required=True)
    f.add_argument("--pretrained", required=True)
    f.add_argument("--cache-dir", required=True)
    f.add_argument("--out", required=True)
    d = sub.add_parser("describe", help="the describe job's interpreter")
    d.add_argument("--experiment", required=True)
    d.add_argument("--describe", required=True, help="JSON: the experiment's describe section")
    d.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.command == "fetch-clip":
        from .method.clip_cache import fetch_pretrained

        path = fetch_pretrained(a.name, a.pretrained, a.cache_dir)
        problems, record = [], {"name": a.name, "pretrained": a.pretrained, "file": str(path),
                                "bytes": path.stat().st_size}
    elif a.command == "schedule":
        runs = json.loads(a.runs)
        check = json.loads(Path(a.data_check).read_text())
        problems = schedule_problems(a.experiment, runs, check, a.split, json.loads(a.variants))
        record = {"experiment": a.experiment, "split": a.split,
                  "n_images": (check["splits"].get(a.split) or {}).get("n_images"), "runs": sorted(runs)}
    else:
        problems = describe_problems(a.experiment, json.loads(a.describe))
        record = {"experiment": a.experiment, "describe_python": json.loads(a.describe).get("python")}
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
