"""Validation of the pipeline configuration against `workflow/schemas/config.schema.yaml`.

Used by the Snakefile before any job runs and by the stage CLIs, so that a config with an
unknown key or a wrong type fails with one message naming the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not match the schema."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(config: dict, schema: dict | None = None) -> dict:
    """Return a deep copy of `config` with defaults filled in; raise ConfigError naming the key."""
    schema = schema or load_schema()
    config = copy.deepcopy(config)
    Validator = _with_defaults(jsonschema.Draft202012Validator)
    # Absent optional sections are created first so that their defaults are filled in and
    # every run records a complete configuration.
    for dataset in config.values():
        if isinstance(dataset, dict):
            for section in ("evaluate", "describe", "finetune", "pretrain"):
                dataset.setdefault(section, {})
    errors = sorted(Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties" and e.validator_value is False:
                unknown = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                lines.append(f"config key {_key_path(e)}: unknown key(s) {unknown}; "
                             f"allowed: {sorted(e.schema.get('properties', {}))}")
            else:
                lines.append(f"config key {_key_path(e)}: {e.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def load(*paths: str | Path) -> dict:
    """Load and merge YAML files (later files update earlier ones, recursively), then validate."""
    merged: dict[str, Any] = {}
    for p in paths:
        with open(p) as f:
            merge(merged, yaml.safe_load(f) or {})
    return validate(merged)


def merge(base: dict, update: dict) -> dict:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base
