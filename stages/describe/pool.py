"""Building one spurious pool: generate (or read), parse, filter, deduplicate, check its size.

The rows of a pool are plain dicts with the Parquet columns (see `output.COLUMNS`). Row order is
the order of first appearance (sample 0's lines first), so a pool is a deterministic function of
the backend's answers.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import parse
from .parse import Filters, Rejected, Rejection
from .prompts import PromptSpec, instance_messages, prompt_sha256, prompt_text, template_messages
from .sampling import SamplingSpec


class PoolTooSmall(RuntimeError):
    """A pool below describe.min_pool: the stage fails instead of writing a useless pool."""


@dataclass
class Pool:
    """One spurious type's pool: its rows (Parquet columns), the rejected lines and the provenance
    that goes into the file metadata."""
    spurious_type: str
    backend: str
    model: str
    prompt_sha256: str
    seed: int
    rows: list[dict] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    prompt: dict = field(default_factory=dict)  # what was asked, for the file metadata
    engine: dict = field(default_factory=dict)  # how the backend's engine was set up
    sampling: dict = field(default_factory=dict)  # step -> every sampling parameter both engines got

    def rejection_counts(self) -> dict[str, int]:
        """The number of rejected lines per reason, reasons sorted."""
        return dict(sorted(Counter(r.reason for r in self.rejections).items()))

    def check_size(self, min_pool: int) -> None:
        """Raise PoolTooSmall, with counts, examples of rejections and what to change, when the pool has
        fewer than `min_pool` templates."""
        if len(self.rows) >= min_pool:
            return
        lines = [f"describe: the {self.spurious_type!r} pool has {len(self.rows)} templates, fewer than "
                 f"describe.min_pool={min_pool} (backend {self.backend}, model {self.model}).",
                 f"  kept {len(self.rows)}, rejected {len(self.rejections)}: {self.rejection_counts() or 'none'}"]
        for reason in self.rejection_counts():
            examples = [r for r in self.rejections if r.reason == reason][:3]
            for r in examples:
                lines.append(f"  [{reason}] {r.raw_line[:100]!r}" + (f" ({r.detail})" if r.detail else ""))
        lines.append("  Raise describe.n_samples, use a larger model (backend vllm) or give a curated list "
                     "(backend file); lower describe.min_pool only if a small pool is really intended.")
        raise PoolTooSmall("\n".join(lines))


def _row(pool: Pool, template: str, phrase: str, instance: str, sample_index: int, raw_line: str,
         raw_template: str, from_example: bool) -> dict:
    return {"spurious_type": pool.spurious_type, "template": template, "phrase": phrase,
            "backend": pool.backend, "model": pool.model, "prompt_sha256": pool.prompt_sha256,
            "seed": pool.seed, "sample_index": sample_index, "raw_line": raw_line, "instance": instance,
            "raw_template": raw_template, "from_example": from_example}


def generate_pool(spec: PromptSpec, backend, params: dict, *, domain: str, classnames: list[str],
                  seed: int) -> Pool:
    """The paper's two steps with an LLM: sample lists of instances, then template each one."""
    filters = Filters(tuple(classnames), params["max_words"], parse.prompt_vocabulary(prompt_text(spec, domain)))
    pool = Pool(spec.type, backend.name, backend.model_id, prompt_sha256(spec, domain), seed,
                prompt={"file": Path(spec.path).name, "instances": instance_messages(spec, domain),
                        "templates": template_messages(spec, "<instance>")})

    # Step 1: n samples of one list request. Step 2 (below): one greedy few-shot conversion per
    # distinct instance; a template needs about one token per word plus the scaffold, so longer
    # answers are cut (and then rejected as too long).
    steps = {"instances": dict(n=params["n_samples"], temperature=params["temperature"], top_p=params["top_p"],
                               max_tokens=params["max_tokens"], seed=seed),
             "templates": dict(n=1, temperature=0.0, top_p=1.0, max_tokens=params["max_words"] + 16, seed=seed)}
    pool.engine = dict(getattr(backend, "engine", {}))
    pool.sampling = {step: SamplingSpec.make(**kw).as_dict() for step, kw in steps.items()}
    [answers] = backend.chat([instance_messages(spec, domain)], **steps["instances"], desc=f"{spec.type}: instances")
    example_keys = {parse.dedup_key(x) for x in spec.example_lines()}
    instances: dict[str, tuple[str, int, str]] = {}  # key -> (instance, sample_index, raw_line)
    for sample_index, answer in enumerate(answers):
        for raw in parse.split_answer(answer):
            try:
                instance = parse.parse_instance(raw, filters)
                if parse.dedup_key(instance) in instances:
                    raise Rejected("duplicate", f"of {instance!r}")
            except Rejected as r:
                pool.rejections.append(Rejection(raw, r.reason, r.detail, "instance", sample_index))
                continue
            instances[parse.dedup_key(instance)] = (instance, sample_index, raw)

    items = list(instances.values())
    templated = []
    if items:
        templated = backend.chat([template_messages(spec, inst) for inst, _, _ in items], **steps["templates"],
                                 desc=f"{spec.type}: templates")
    seen: dict[str, str] = {}
    for (instance, sample_index, raw), [answer] in zip(items, templated):
        lines = parse.split_answer(answer)
        raw_template = lines[0] if lines else ""
        try:
            template, phrase = parse.parse_template(raw_template, filters)
            if not parse.keeps_instance(instance, phrase):
                raise Rejected("template_drift", f"{instance!r} became {template!r}")
            if (key := parse.dedup_key(template)) in seen:
                raise Rejected("duplicate", f"template of {seen[key]!r}")
        except Rejected as r:  # both lines kept: what was listed and what it became
            pool.rejections.append(Rejection(f"{raw} -> {raw_template}", r.reason, r.detail, "template", sample_index))
            continue
        seen[key] = instance
        pool.rows.append(_row(pool, template, phrase, instance, sample_index, raw, raw_template,
                              parse.dedup_key(instance) in example_keys))
    return pool


def read_template_file(path: str | Path) -> list[str]:
    """A user's templates: YAML (a list, or a mapping with a `templates` list), a `.pt` file holding
    a Python list of strings saved with torch.save (the authors' released `keywords/spurious_*.pt`),
    or plain text, one per line, `#` starting a comment line."""
    path = Path(path)
    if path.suffix == ".pt":
        return _read_torch_list(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text)
        items = data.get("templates") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a YAML list of templates or a mapping with key 'templates'")
        return [str(x) for x in items]
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _read_torch_list(path: Path) -> list[str]:
    import pickle

    import torch

    # weights_only: a list of strings loads, while a pickle that would run code is refused
    try:
        items = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: not a list saved with torch.save ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise ValueError(f"{path}: expected a list of template strings (as the released keywords/spurious_*.pt), "
                         f"got {type(items).__name__}")
    return list(items)


def file_pool(spurious_type: str, path: str | Path, params: dict, *, classnames: list[str], seed: int) -> Pool:
    """The `file` backend: the same filters on a given list (e.g. the paper's released pools)."""
    filters = Filters(tuple(classnames), params["max_words"])
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    pool = Pool(spurious_type, "file", str(path), digest, seed, prompt={"file": str(path)})
    seen: dict[str, str] = {}
    for index, raw in enumerate(read_template_file(path)):
        try:
            template, phrase = parse.parse_template(raw, filters)
            if (key := parse.dedup_key(template)) in seen:
                raise Rejected("duplicate", f"of {seen[key]!r}")
        except Rejected as r:
            pool.rejections.append(Rejection(raw, r.reason, r.detail, "file", 0))
            continue
        seen[key] = raw
        pool.rows.append(_row(pool, template, phrase, phrase, 0, raw, raw, False))
    return pool
