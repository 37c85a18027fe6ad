"""Validation of the pipeline configuration against `workflow/schemas/config.schema.yaml`.

Used by the Snakefile before any job runs and by the stage CLIs, so that a config with an
unknown key or a wrong type fails with one message naming the key.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema."""


# The folders and files the workflow writes, spelled once: the rules' outputs (the braces are their
# wildcards) and, filled in with `.format`, this module's checks and jobs and the stages' defaults.
WORLD_DATASET = "data/{world}/dataset"                 # a synthetic world's SynthBirds (rule synth_world)
WORLD_PRETRAIN_SET = "data/{world}/pretrain_set.npz"   # its captioned pre-training images
WORLD_CLIP = "data/{world}/clip"                       # its tiny CLIP teacher, open_clip local-dir: (rule pretrain)
SOURCE_ROOT = "data/{source}"                          # a source world's task and shifted sets (rule synth_source)
ORACLE_POOLS = "data/oracle_pools"                     # the world's own nuisance words as pools (rule oracle_pools)
DATA_CHECK = "data/{dataset}/data_check.json"
PREPARED = "data/{dataset}/prepared"                   # the mark of a data set fetched and laid out (rule prepare_data)
RESIZED_COPY = "data/{dataset}/resized_{split}"        # a training split's pre-resized copy (rule resize_split)
POOLS = "data/{experiment}/pools"                      # the spurious caption pools (rule describe)
SMOLLM2_SAFETENSORS = "data/models/smollm2-135m-instruct"   # SmolLM2 de-quantised for vLLM (rule convert_smollm2)
DESCRIBE_ENV = ".venv-describe"                      # the describe job's own environment (vLLM; python -m stages.describe env)
DESCRIBE_PYTHON = f"{DESCRIBE_ENV}/bin/python"       # its interpreter: describe.python when the backend is vllm
TEACHER_TEXT = "data/{experiment}/embeddings/teacher_text.parquet"   # the teacher's text embeddings (rule embed)
PREFLIGHT = "data/{experiment}/preflight.json"        # its runs' schedules fit the data check (rule preflight)
PREFLIGHT_DESCRIBE = "data/{experiment}/preflight_describe.json"   # its describe job can start (rule preflight_describe)
RUN_DIR = "results/runs/{experiment}/{method}/seed{seed}"           # a run's checkpoint, log and evaluations
REPORT_DIR = "results/{name}"                          # an experiment's or a report's report (rule report)
REPORT_TABLE = "results/tables/{name}/{table}"         # one table file of it, a target of its own (rule report_table)
# folders of results/ that are not reports: no experiment or report may take their names
RESERVED_NAMES = {"runs": "every experiment's runs", "tables": "the single-table targets"}


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


# YAML reads `8.0` as a float, which JSON Schema counts as an integer; the stages do not (vLLM
# refuses a float `n`, range() a float count), so here an integer is a YAML/JSON integer only.
_STRICT_INTEGER = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, instance: isinstance(instance, int) and not isinstance(instance, bool))

# Validates in place: an instance's absent keys that have a default in the schema get it, so that
# a validated configuration is complete and no code restates a default.
FillingValidator = _with_defaults(jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                                               type_checker=_STRICT_INTEGER))


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The configuration schema, as YAML reads it."""
    with open(path) as f:
        return yaml.safe_load(f)


def key_path(error: jsonschema.ValidationError) -> str:
    """The dotted key of a validation error (`experiments.x.finetune.lr`)."""
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


# the evaluate keys naming targets, and the role of their targets in the tables
TARGET_KEYS = {"shifts": "shift", "groups": "group", "zeroshot": "zeroshot"}


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a deep copy of `config` with defaults filled in; raise ConfigError naming the key.

    Beyond the schema: every data set an experiment or report names exists, report names do not
    shadow experiments, synthetic data sets live where their rules write them, and a training
    set's class names and templates are known before any job (stages.datasets.static_*)."""
    schema = schema or load_schema()
    config = copy.deepcopy(config)
    if isinstance(config.get("experiments"), dict):
        config["experiments"] = resolve_inheritance(config["experiments"])
    # Absent optional sections are created first so that their defaults are filled in and
    # every run records a complete configuration.
    for experiment in (config.get("experiments") or {}).values():
        if isinstance(experiment, dict):
            for section in ("evaluate", "describe", "finetune"):
                experiment.setdefault(section, {})
    for dataset in (config.get("datasets") or {}).values():
        if isinstance(dataset, dict) and "synthetic" in dataset:
            dataset.setdefault("pretrain", {})
    errors = sorted(FillingValidator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties" and e.validator_value is False:
                unknown = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                lines.append(f"config key {key_path(e)}: unknown key(s) {unknown}; "
                             f"allowed: {sorted(e.schema.get('properties', {}))}")
            else:
                lines.append(f"config key {key_path(e)}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    problems = _cross_references(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def resolve_inheritance(experiments: dict) -> dict:
    """`experiments` with each `inherit: <parent>` resolved: the parent's settings (themselves
    resolved) deep-merged with the experiment's own keys (`merge`: a mapping merges key by key, a
    list or a value replaces), `inherit` kept as a record. Resolved on the merged configuration,
    before defaults are filled, so that a --configfile override of the parent reaches its children
    and a child's default never hides its parent's setting. ConfigError, one line naming the key,
    for a parent that is no experiment and for a cycle."""
    resolved: dict[str, Any] = {}

    def resolve(name: str, chain: list[str]) -> Any:
        if name in resolved:
            return resolved[name]
        e = experiments[name]
        parent = e.get("inherit") if isinstance(e, dict) else None
        if parent is None:
            resolved[name] = e
            return e
        key = f"config key experiments.{name}.inherit"
        if not isinstance(parent, str) or parent not in experiments:
            raise ConfigError(f"{key}: {parent!r} is not an experiment; known: {', '.join(sorted(experiments))}")
        if parent in chain:
            cycle = " -> ".join([*chain[chain.index(parent):], parent])
            raise ConfigError(f"config key experiments.{parent}.inherit: inheritance cycle {cycle}")
        base = resolve(parent, [*chain, parent])
        if not isinstance(base, dict):
            raise ConfigError(f"{key}: experiment {parent} is not a mapping")
        resolved[name] = merge(copy.deepcopy(base), e)
        return resolved[name]

    return {name: resolve(name, [name]) for name in experiments}


def _cross_references(config: dict) -> list[str]:
    """What the schema cannot say of a config with its defaults filled, one line per problem naming
    the key: data sets, experiments, targets and report sections that point nowhere, synthetic sets
    outside the folders their rules write, class names neither the config, the reader nor the
    training tree gives (`classnames`) and class-name files that cannot be read, pools of another
    experiment that lack a type, a world's teacher without its world, reserved names, and (once
    those hold) choices made on a split a table reports (`selection_problems`). Reads a training
    imagefolder's class folders."""
    from .method.registry import METHODS

    datasets, experiments = config["datasets"], config["experiments"]
    known = f"known data sets: {', '.join(sorted(datasets)) or 'none'}"
    problems = []
    for name, d in datasets.items():
        if "synthetic" in d:
            if d["reader"] != "waterbirds" or d["root"] != WORLD_DATASET.format(world=name):
                problems.append(f"config key datasets.{name}: a synthetic data set is written by the synth_world "
                                f"rule: reader 'waterbirds', root {WORLD_DATASET.format(world=name)!r} "
                                f"(got {d['reader']!r}, {d['root']!r})")
        elif "pretrain" in d:
            problems.append(f"config key datasets.{name}.pretrain: only a synthetic data set has a pre-trained teacher")
        source = f"{SOURCE_ROOT.format(source=name)}/source"
        if "source" in d and (d["reader"] != "imagefolder" or d["root"] != source):
            problems.append(f"config key datasets.{name}: the synthetic source task is written by the synth_source "
                            f"rule: reader 'imagefolder', root {source!r} "
                            f"(got {d['reader']!r}, {d['root']!r})")
        problems += prepare_problems(name, d)
        classes = d["superclasses"] and classnames(config, name)
        if classes and len(d["superclasses"]) != len(classes):
            problems.append(f"config key datasets.{name}.superclasses: {len(d['superclasses'])} superclasses for the "
                            f"{len(classes)} classes ({', '.join(classes[:3])}, ...): give one per class, in label order")
    class_problems = [p for name in datasets for p in classnames_problems(config, name)]
    problems += class_problems
    for name, e in experiments.items():
        if e["train"] not in datasets:
            problems.append(f"config key experiments.{name}.train: unknown data set {e['train']!r}; {known}")
            continue
        for key in TARGET_KEYS:
            for target in e["evaluate"][key]:
                if target not in datasets:
                    problems.append(f"config key experiments.{name}.evaluate.{key}: unknown data set {target!r}; "
                                    f"{known}")
        train, split = datasets[e["train"]], e["finetune"]["train_split"]
        if not class_problems and classnames(config, e["train"], split) is None:
            if train["root"] in generated_roots(config):
                problems.append(f"config key datasets.{e['train']}.classnames: experiment {name} trains on it, and "
                                f"reader {train['reader']!r} knows its class names only from the data: list them")
            else:
                problems.append(f"config key datasets.{e['train']}.root: experiment {name} trains on it, and reader "
                                f"{train['reader']!r} names its classes after the class folders of "
                                f"{train['root']}/{split}, which is not there: put the tree there "
                                f"({train['root']}/{{train,val,test}}/<class>/*.jpg) or list "
                                f"datasets.{e['train']}.classnames")
        ft = e["finetune"]
        masks = {"finetune.star_mask": ft["star_mask"],
                 **{f"finetune.variants.{v}.star_mask": d["star_mask"] for v, d in ft["variants"].items()
                    if "star_mask" in d}}
        for key, mask in masks.items():
            if mask == "superclass" and train["superclasses"] is None:
                problems.append(f"config key experiments.{name}.{key}: superclass needs the superclass of each class "
                                f"of the training set: datasets.{e['train']}.superclasses")
        if (other := e["describe"]["pools_of"]) is not None:
            o = experiments.get(other)
            if o is None or other == name or o["describe"]["pools_of"] is not None:
                problems.append(f"config key experiments.{name}.describe.pools_of: {other!r} is not another "
                                f"experiment that writes its own pools")
            elif lost := sorted(set(e["describe"]["types"]) - set(o["describe"]["types"])):
                problems.append(f"config key experiments.{name}.describe.types: {lost} are not types of the "
                                f"pools of experiment {other} ({', '.join(o['describe']['types'])})")
        world = re.fullmatch("local-dir:" + WORLD_CLIP.format(world="([^/]+)"), e["model"]["name"])
        if world and not (world[1] in datasets and "synthetic" in datasets[world[1]]):
            problems.append(f"config key experiments.{name}.model.name: {WORLD_CLIP.format(world=world[1])} is the "
                            f"tiny CLIP the pretrain rule builds for a synthetic data set, but datasets.{world[1]} "
                            "is not one")
    for key in ("experiments", "reports"):
        for name in sorted(set(config[key]) & set(RESERVED_NAMES)):
            problems.append(f"config key {key}.{name}: results/{name} holds {RESERVED_NAMES[name]}; "
                            "choose another name")
    for name, sections in config["reports"].items():
        if name in experiments:
            problems.append(f"config key reports.{name}: an experiment has that name (both would be results/{name})")
        for i, section in enumerate(sections):
            e = experiments.get(section["experiment"])
            if e is None:
                problems.append(f"config key reports.{name}.{i}.experiment: unknown experiment "
                                f"{section['experiment']!r}")
                continue
            lost = sorted(set(section["targets"] or []) - set(target_roles(e)))
            if lost:
                problems.append(f"config key reports.{name}.{i}.targets: {lost} are not targets of experiment "
                                f"{section['experiment']} ({', '.join(target_roles(e))})")
            # a method the experiment does not run (e.g. an override shortened its list) is left
            # out of the section; a name that is no method at all is a typo
            known = {*METHODS, "wiseft", *e["finetune"]["variants"]}
            lost = sorted(set(section["methods"] or []) - known)
            if lost:
                problems.append(f"config key reports.{name}.{i}.methods: {lost} are neither methods nor variants "
                                f"of experiment {section['experiment']}")
    return problems or selection_problems(config)   # (it reads the names checked above)


def classnames_problems(config: dict, name: str) -> list[str]:
    """What is wrong with a data set's `classnames_file` (another reader, beside `classnames`, a file
    that cannot be read), one line naming the key."""
    from .datasets import DatasetConfigError, imagefolder

    d, key = config["datasets"][name], f"config key datasets.{name}.classnames_file"
    if d["classnames_file"] is None:
        return []
    if d["reader"] != "imagefolder":
        return [f"{key}: reader {d['reader']!r} does not name its classes after folders; only reader imagefolder "
                "takes a folder,name file"]
    if d["classnames"] is not None:
        return [f"{key}: give classnames or classnames_file, not both"]
    try:
        imagefolder.read_class_map(d["classnames_file"], key[len("config key "):])
    except DatasetConfigError as e:
        return [f"config key {e}"]
    return []


def class_override(config: dict, dataset: str) -> list[str] | dict[str, str] | None:
    """What the data check is told of a data set's class names: its `classnames` list, its
    `classnames_file` as a {folder: name} mapping, or None (the reader's own)."""
    from .datasets import imagefolder

    d = config["datasets"][dataset]
    if d["classnames_file"] is not None:
        return imagefolder.read_class_map(d["classnames_file"], f"datasets.{dataset}.classnames_file")
    return d["classnames"]


def classnames(config: dict, dataset: str, split: str = "train") -> list[str] | None:
    """The class names, in label order, of runs trained on data set `dataset`: its `classnames`, its
    `classnames_file`'s names in the sorted folders' order, its reader's own, or (reader imagefolder)
    the names of the class folders of its `split`, read now; None while only data that are not
    there yet know them. The data check holds the tree to the same names (datasets.imagefolder)."""
    from .datasets import DatasetMissing, imagefolder, static_classnames

    d, override = config["datasets"][dataset], class_override(config, dataset)
    if isinstance(override, dict):
        return imagefolder.mapped_classnames(override)
    if override is not None:
        return list(override)
    if (static := static_classnames(d["reader"])) is not None or d["reader"] != "imagefolder":
        return static
    try:
        return imagefolder.folder_classnames(d["root"], split)
    except DatasetMissing:
        return None


def report_split(splits: list[str]) -> str:
    """The split a table shows of a target evaluated on `splits`: test if evaluated, else the last
    (ImageNet's val). The report's tables follow the same rule (tests/test_selection.py checks it)."""
    return "test" if "test" in splits else splits[-1]


def selection_problems(config: dict) -> list[str]:
    """Every choice made on a split that a table of the same experiment reports (it would inflate
    that column). The choices the configuration can make on data: a run's checkpoint by
    `select: val_worst_group` on the training set's `val_split`. (The linear probe chooses its L2
    on a held-out slice of the training split; WiSE-FT's row is at the fixed `wiseft_alpha`.) A
    split is (reader, root, split), so that two data set names for one folder do not hide it."""
    from .datasets import EVAL_SPLITS
    from .method.registry import METHODS

    datasets, problems = config["datasets"], []
    for name, e in config["experiments"].items():
        shown = {}
        for target in target_roles(e):
            d = datasets[target]
            shown.setdefault((d["reader"], d["root"], report_split(d["splits"] or EVAL_SPLITS[d["reader"]])), target)
        ft, train = e["finetune"], datasets[e["train"]]
        reporter = shown.get((train["reader"], train["root"], ft["val_split"]))
        if reporter is None:
            continue
        for method in ft["methods"]:
            variant = ft["variants"].get(method, {})
            base = METHODS.get(variant.get("method", method))
            if base is None or not base.fine_tunes or variant.get("select", ft["select"]) != "val_worst_group":
                continue
            key = f"variants.{method}.select" if "select" in variant else "select"
            problems.append(f"config key experiments.{name}.finetune.{key}: val_worst_group chooses run {method}'s "
                            f"epoch on {e['train']}'s {ft['val_split']!r} split (finetune.val_split), which the "
                            f"experiment's tables report (target {reporter}): choose on a split no table shows "
                            f"(val_split), or select: last")
    return problems


def prepare_problems(name: str, dataset: dict) -> list[str]:
    """Every download pins its content (sha256 or md5) unless the config says `checksum: skip`;
    one source per data set; a synthetic set is built, not prepared."""
    spec = dataset.get("prepare")
    if spec is None:
        return []
    key = f"config key datasets.{name}.prepare"
    problems = []
    if "synthetic" in dataset or "source" in dataset:
        problems.append(f"{key}: a synthetic data set is built by its rule, not prepared")
    if len([k for k in ("files", "hub", "archives") if k in spec]) > 1:
        problems.append(f"{key}: give one of files, hub or archives")
    for i, f in enumerate(spec.get("files", [])):
        pins = [k for k in ("sha256", "md5", "checksum") if k in f]
        if not pins:
            problems.append(f"{key}.files.{i}: no checksum for {f['url']}: give the publisher's sha256 or "
                            "md5, or `checksum: skip` to download it unchecked")
        elif len(pins) > 1:
            problems.append(f"{key}.files.{i}: give one of sha256, md5 or `checksum: skip` (got {pins})")
    return problems


def is_synthetic(config: dict, dataset: str) -> bool:
    """Whether the config's data set is one the synthetic world generates (its `synthetic` key)."""
    return "synthetic" in config["datasets"][dataset]


def checked_splits(config: dict, dataset: str) -> list[str]:
    """The splits of a data set the pipeline reads, which its data check opens: those evaluated,
    and the training and val splits of every experiment trained on it (ImageNet's train/ is
    checked only where runs train on it)."""
    from .datasets import EVAL_SPLITS

    d = config["datasets"][dataset]
    splits = list(d["splits"] or EVAL_SPLITS[d["reader"]])
    for e in config["experiments"].values():
        if e["train"] == dataset:
            splits += [e["finetune"]["train_split"], e["finetune"]["val_split"]]
    return list(dict.fromkeys(splits))


def generated_roots(config: dict) -> dict[str, str]:
    """Data set folders this workflow writes -> the rule that writes them: a synthetic data set's
    (synth_world) and a source world's task and shifted sets (synth_source)."""
    from .synthetic.source import SETS

    roots = {}
    for name, d in config["datasets"].items():
        if "synthetic" in d:
            roots[WORLD_DATASET.format(world=name)] = "synth_world"
        if "source" in d:
            roots.update({f"{SOURCE_ROOT.format(source=name)}/{s}": "synth_source" for s in SETS})
    return roots


def synthetic_teacher(config: dict, experiment: dict) -> str | None:
    """The synthetic data set whose tiny CLIP is the experiment's teacher (model
    `local-dir:data/<dataset>/clip`, built by the pretrain rule), or None for a published model."""
    name = experiment["model"]["name"]
    for dataset, d in config["datasets"].items():
        if "synthetic" in d and name == "local-dir:" + WORLD_CLIP.format(world=dataset):
            return dataset
    return None


def target_roles(experiment: dict) -> dict[str, str]:
    """Every data set the experiment's runs are evaluated on, with its role in the tables: its
    training set first (`id`), then the targets of `evaluate` (a data set listed twice keeps its
    first role)."""
    roles = {experiment["train"]: "id"}
    for key, role in TARGET_KEYS.items():
        for target in experiment["evaluate"][key]:
            roles.setdefault(target, role)
    return roles


def report_methods(experiment: dict, only: list[str] | None = None) -> list[str]:
    """The rows of an experiment's tables: zeroshot, its methods, and wiseft when it interpolates
    one; of those, the ones in `only` if given (a report section's `methods`)."""
    ft = experiment["finetune"]
    methods = ["zeroshot"] + ft["methods"]
    if ft["wiseft_of"] in methods and ft["wiseft_of"] != "zeroshot":
        methods.append("wiseft")
    return [m for m in dict.fromkeys(methods) if only is None or m in only]


def run_seeds(experiment: dict, method: str) -> list[int]:
    """The seeds of a method's runs. Zero-shot is one run, under the first seed: it trains nothing
    and draws nothing, so its runs under other seeds would be copies."""
    seeds = experiment["finetune"]["seeds"]
    return seeds[:1] if method == "zeroshot" else seeds


def pools_experiment(experiments: dict, name: str) -> str:
    """The experiment whose describe job writes `name`'s pools (describe.pools_of, else itself)."""
    return experiments[name]["describe"]["pools_of"] or name


def resized_root(name: str, dataset: dict) -> str:
    """The folder of data set `name`'s resized copy (rule resize_split)."""
    return RESIZED_COPY.format(dataset=name, split=dataset["resized_copy"]["split"])


def train_job(config: dict, name: str) -> dict:
    """What the describe, embed and fine-tune stages read of an experiment: its own sections, with
    the training set's reader, folder, class names and class-prompt templates resolved."""
    from . import datasets as readers

    e = config["experiments"][name]
    d = config["datasets"][e["train"]]
    job = {k: copy.deepcopy(e[k]) for k in ("seed", "domain", "model", "describe", "finetune")}
    job["experiment"] = name
    job["classnames"] = classnames(config, e["train"], e["finetune"]["train_split"])
    job["data"] = {"dataset": e["train"], "reader": d["reader"], "root": d["root"]}
    if d.get("resized_copy") is not None:   # the training split's pre-resized copy (stages.datasets.resized)
        job["data"]["resized_copy"] = resized_root(e["train"], d)
    if d["superclasses"] is not None:
        job["superclasses"] = list(d["superclasses"])
    job["evaluate"] = {"templates": d["templates"] or readers.static_templates(d["reader"]),
                       **{k: e["evaluate"][k] for k in ("batch_size", "device", "num_workers")}}
    if "synthetic" in d or "source" in d:   # the preview counts the words the world renders
        job["synthetic"] = True
    return job


def load(*paths: str | Path) -> dict:
    """Load and merge YAML files (later files update earlier ones, recursively), then validate."""
    merged: dict[str, Any] = {}
    for p in paths:
        with open(p) as f:
            merge(merged, yaml.safe_load(f) or {})
    return validate(merged)


def merge(base: dict, update: dict) -> dict:
    """Merge `update` into `base` in place, recursing into dicts both hold; other values are deep
    copies of update's. Returns `base`."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base
