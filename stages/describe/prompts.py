"""Prompt files (`prompts/<type>.yaml`) and the chat messages built from them.

One file per spurious type holds both of the paper's steps: `instances` (list concrete instances
of the type for images of the task's domain) and `templates` (turn one instance into a
class-agnostic template). Every backend sends exactly these messages, so a pool generated with
vLLM on a GPU and one generated on a laptop differ only by the model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"

Message = dict[str, str]


@dataclass(frozen=True)
class PromptSpec:
    """The contents of one prompt file: step 1's messages and worked example, step 2's system message
    and (instance, template) examples."""
    type: str
    n_items: int
    instances_system: str
    instances_user: str
    example_domain: str
    example_answer: str
    templates_system: str
    template_examples: tuple[tuple[str, str], ...]
    path: str

    def example_lines(self) -> list[str]:
        """The example answer's items: a generated line equal to one of them was copied."""
        return [line for line in self.example_answer.splitlines() if line.strip()]


def load_prompt(spurious_type: str, prompts_dir: str | Path | None = None) -> PromptSpec:
    """Read and check `<prompts_dir>/<spurious_type>.yaml` (default: the project's prompts/);
    FileNotFoundError naming the available types, ValueError for a malformed file."""
    path = Path(prompts_dir or DEFAULT_PROMPTS_DIR) / f"{spurious_type}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no prompt file for spurious type {spurious_type!r}: {path} "
                                f"(available: {available})")
    with open(path) as f:
        raw = yaml.safe_load(f)
    try:
        inst, tmpl = raw["instances"], raw["templates"]
        examples = tuple((str(a), str(b)) for a, b in tmpl["examples"])
        spec = PromptSpec(
            type=raw.get("type", spurious_type),
            n_items=int(raw.get("n_items", 15)),
            instances_system=inst["system"].strip(),
            instances_user=inst["user"].strip(),
            example_domain=inst["example"]["domain"],
            example_answer=inst["example"]["answer"].strip(),
            templates_system=tmpl["system"].strip(),
            template_examples=examples,
            path=str(path),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed prompt file ({e!r}); see prompts/background.yaml") from e
    if spec.type != spurious_type:
        raise ValueError(f"{path}: declares type {spec.type!r}, expected {spurious_type!r}")
    for instance, template in examples:
        if template.count("{}") != 1:
            raise ValueError(f"{path}: example template {template!r} must hold exactly one {{}}")
    return spec


def _fill(text: str, domain: str, n_items: int) -> str:
    # `replace`, not `format`: the templates' own `{}` must survive.
    return text.replace("{domain}", domain).replace("{n_items}", str(n_items))


def instance_messages(spec: PromptSpec, domain: str) -> list[Message]:
    """Step 1: one worked example on another domain, then the request for the task's domain."""
    user = spec.instances_user
    return [
        {"role": "system", "content": spec.instances_system},
        {"role": "user", "content": _fill(user, spec.example_domain, spec.n_items)},
        {"role": "assistant", "content": spec.example_answer},
        {"role": "user", "content": _fill(user, domain, spec.n_items)},
    ]


def template_messages(spec: PromptSpec, instance: str) -> list[Message]:
    """Step 2: few-shot conversion of one instance into a template."""
    messages = [{"role": "system", "content": spec.templates_system}]
    for example, template in spec.template_examples:
        messages += [{"role": "user", "content": example}, {"role": "assistant", "content": template}]
    messages.append({"role": "user", "content": instance})
    return messages


def prompt_sha256(spec: PromptSpec, domain: str) -> str:
    """Identity of everything the model is told for this type and domain (both steps; the
    instance slot of step 2 left empty), so that two pools with the same hash were asked the
    same questions."""
    payload = {"instances": instance_messages(spec, domain), "templates": template_messages(spec, "")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def prompt_text(spec: PromptSpec, domain: str) -> str:
    """The words of the instructions (not of the worked example): a generated line made of them
    echoes the prompt rather than naming an instance."""
    return " ".join([spec.instances_system, _fill(spec.instances_user, domain, spec.n_items)])
