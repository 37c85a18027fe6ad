"""The evaluate stage's CLI: one run, every target of its experiment, one record file per target."""

from __future__ import annotations

import json

import pytest

from helpers import TEMPLATES, dataset_config, make_dataset, make_tiny_clip
from stages import datasets
from stages.evaluate import run as evaluate
from stages.evaluate.__main__ import main as evaluate_main


def test_one_job_writes_one_record_per_target(tmp_path, capsys):
    model = make_tiny_clip(tmp_path / "clip")
    roots = {"own": make_dataset(tmp_path / "own"), "other": make_dataset(tmp_path / "other", seed=1)}
    job = dataset_config(roots["own"], model)
    checks = {}
    for name, root in roots.items():
        checks[name] = tmp_path / f"{name}_check.json"
        checks[name].write_text(json.dumps(datasets.check(name, "waterbirds", str(root), templates=TEMPLATES)))
    targets = [{"target": "own", "role": "id", "reader": "waterbirds", "root": str(roots["own"]), "splits": ["val"],
                "data_check": str(checks["own"])},
               {"target": "other", "role": "group", "reader": "waterbirds", "root": str(roots["other"]),
                "splits": ["val", "test"], "data_check": str(checks["other"])}]
    cfg = {"experiment": "tiny", "targets": targets, "model": job["model"], "evaluate": job["evaluate"],
           "finetune": {"precision": "auto"}}
    evaluate_main(["--config", json.dumps(cfg), "--method", "zeroshot", "--seed", "3", "--out-dir", str(tmp_path / "eval")])

    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "eval").glob("*.json")}
    assert set(records) == {"own", "other"}
    assert records["own"]["role"] == "id" and records["other"]["role"] == "group"
    assert set(records["own"]["splits"]) == {"val"} and set(records["other"]["splits"]) == {"val", "test"}
    # the same model on the same images scores the same, whichever target file it is written to
    assert records["own"]["splits"]["val"]["accuracy"] == pytest.approx(
        evaluate.run({**cfg, "targets": targets[:1]}, {"own": json.loads(checks["own"].read_text())},
                     "zeroshot", 3)["own"]["splits"]["val"]["accuracy"])
    for r in records.values():
        assert r["seed"] == 3 and r["method"] == "zeroshot" and r["head"] == "zeroshot" and r["checkpoint"] is None
        assert r["splits"]["val"]["n"] == 8
    printed = capsys.readouterr().out
    assert "zeroshot seed 3 own val: accuracy" in printed and "zeroshot seed 3 other test: accuracy" in printed
