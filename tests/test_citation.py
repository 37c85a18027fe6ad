"""CITATION.cff, LICENSE and the README's BibTeX: the citation validates against the Citation File
Format 1.2.0 schema (vendored, tests/data/cff-1.2.0: `cffconvert --validate` cannot be installed
beside jsonschema 4), and the three agree with each other and with pyproject.toml."""

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "data" / "cff-1.2.0" / "schema.json"


def citation() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text())


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def schema_errors(cff: dict) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(cff)]


def test_citation_cff_is_valid_cff_1_2_0():
    cff = citation()
    assert cff["cff-version"] == "1.2.0"
    assert schema_errors(cff) == []


@pytest.mark.parametrize("breakage", [
    lambda c: c.pop("message"),
    lambda c: c["references"][0].pop("type"),
    lambda c: c.update(license="MIT License"),       # not an SPDX identifier
])
def test_the_schema_check_refuses_a_broken_citation(breakage):
    cff = citation()
    breakage(cff)
    assert schema_errors(cff)


def test_citation_and_licence_agree_with_pyproject():
    cff, project = citation(), pyproject()
    assert cff["version"] == project["version"]
    assert cff["license"] == project["license"]["text"] == "MIT"
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in licence


def test_the_papers_bibtex_in_the_readme_is_the_cited_reference():
    paper = citation()["references"][0]
    readme = (REPO / "README.md").read_text()
    [bibtex] = re.findall(r"```bibtex\n(.*?)```", readme, flags=re.S)
    fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", bibtex, flags=re.M))
    assert fields["title"].replace("{", "").replace("}", "") == paper["title"]
    assert fields["author"] == " and ".join(f"{a['family-names']}, {a['given-names']}" for a in paper["authors"])
    assert int(fields["year"]) == paper["year"]
    assert f"arXiv:{fields['eprint']}" == paper["identifiers"][0]["value"]
    assert "IJCAI" in fields["booktitle"]
