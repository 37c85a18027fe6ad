"""A run is its settings: two experiments that ask for the same run (training data, teacher,
teacher-text table, resolved hyper-parameters, seed) share one job and one checkpoint, owned by the
first in config order (stages/finetune/sharing.py); a hyper-parameter that differs keeps them apart,
a run-time key (track, processes) does not."""

from __future__ import annotations

import copy

import pytest

from stages.config import load, merge, validate
from stages.finetune import sharing


@pytest.fixture(scope="module")
def synth():
    # synthworld_ablation (pools_of: synthworld) asks again for synthworld's flyp and starft runs
    return load("config/synthbirds.yaml")


def owners(cfg: dict, override: dict | None = None) -> dict:
    return sharing.run_owners(validate(merge(copy.deepcopy(cfg), override or {})))


def test_the_same_settings_are_one_run_owned_by_the_first_experiment(synth):
    o = owners(synth)
    e = synth["experiments"]["synthworld_ablation"]
    assert e["finetune"]["seeds"] == [0, 1]
    for seed in (0, 1):
        assert o[("synthworld_ablation", "flyp", seed)] == "synthworld"
        assert o[("synthworld_ablation", "starft", seed)] == "synthworld"
        assert o[("synthworld", "flyp", seed)] == "synthworld"
        # a variant synthworld does not run stays the ablation's own
        assert o[("synthworld_ablation", "starft_lam2", seed)] == "synthworld_ablation"
    assert sharing.shared_runs(o, "synthworld_ablation") == {"synthworld": {"flyp": [0, 1], "starft": [0, 1]}}
    assert ("synthworld_ablation", "zeroshot", 0) not in o   # no training job to share


def test_one_hyper_parameter_apart_is_another_run(synth):
    o = owners(synth, {"experiments": {"synthworld_ablation": {"finetune": {"epochs": 3}}}})
    assert sharing.shared_runs(o, "synthworld_ablation") == {}
    # a variant that sets the key back shares again
    o = owners(synth, {"experiments": {"synthworld_ablation": {"finetune": {
        "epochs": 3, "methods": ["zeroshot", "flyp", "flyp_again"],
        "variants": {"flyp_again": {"method": "flyp", "epochs": synth["experiments"]["synthworld"]["finetune"]["epochs"]}}}}}})
    assert o[("synthworld_ablation", "flyp", 0)] == "synthworld_ablation"
    assert o[("synthworld_ablation", "flyp_again", 0)] == "synthworld_ablation"   # another name, another folder


def test_run_time_keys_do_not_part_runs(synth):
    o = owners(synth, {"experiments": {"synthworld_ablation": {"finetune": {
        "track": ["tensorboard"], "processes": 2, "num_workers": 3, "log_every": 7}}}})
    assert o[("synthworld_ablation", "starft", 1)] == "synthworld"


@pytest.mark.parametrize("override", [
    {"experiments": {"synthworld_ablation": {"seed": 0, "describe": {"types": ["background", "texture"]}}}},
    {"experiments": {"synthworld_ablation": {"finetune": {"val_split": "test"}}}},
    {"experiments": {"synthworld_ablation": {"model": {"name": "local-dir:data/synthbirds/clip",
                                                       "pretrained": "other"}}}},
], ids=["pool types", "val split", "model"])
def test_what_the_run_reads_besides_its_settings_parts_runs(synth, override):
    assert sharing.shared_runs(owners(synth, override), "synthworld_ablation") == {}


def test_a_probe_is_shared_across_pools_but_not_across_probe_keys(synth):
    def probe_owner(override):
        cfg = validate(merge(copy.deepcopy(synth), override))
        o = sharing.probe_owners(cfg)
        return {e: owner for (e, _), owner in o.items()}

    lp = {"synthworld": {"finetune": {"methods": ["zeroshot", "lp"]}},
          "synthworld_oracle": {"finetune": {"methods": ["zeroshot", "lpft"]}}}
    # the oracle experiment has pools of its own, which the probe does not read
    assert probe_owner({"experiments": lp}) == {"synthworld": "synthworld", "synthworld_oracle": "synthworld"}
    merge(lp, {"synthworld_oracle": {"finetune": {"lp_l2_grid": [0.5]}}})
    assert probe_owner({"experiments": lp}) == {"synthworld": "synthworld", "synthworld_oracle": "synthworld_oracle"}


def test_a_shared_run_is_not_trained_under_the_other_experiment(tmp_path):
    """Asking for the duplicate's checkpoint by path names the owner's instead of training it twice."""
    from pipeline import REDUCED, make_workdir, snakemake

    work = make_workdir(tmp_path, REDUCED)
    proc = snakemake(work, "-n", "results/runs/synthworld_ablation/flyp/seed0/checkpoint.pt", check=False)
    assert proc.returncode != 0
    assert ("run flyp seed 0 of experiment synthworld_ablation has the settings of experiment synthworld's: it is "
            "trained once, as results/runs/synthworld/flyp/seed0") in proc.stdout + proc.stderr
