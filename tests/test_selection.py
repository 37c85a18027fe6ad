"""No choice on a split that a table reports: the config check refuses `select: val_worst_group`
on a split the experiment's tables show, naming the key and the target, before any job runs."""

import pytest
from pipeline import REDUCED, make_workdir, snakemake

from stages.config import ConfigError, report_split, validate


def experiment(train: str, **finetune) -> dict:
    return {"train": train, "model": {"name": "RN50"}, "finetune": {"methods": ["zeroshot", "flyp"], **finetune}}


def config(train_reader: str, **finetune) -> dict:
    return {"datasets": {"inet": {"reader": train_reader, "root": "x"}},
            "experiments": {"toy": experiment("inet", **finetune)}}


def test_selection_on_imagenet_val_is_refused_naming_key_and_target():
    # ImageNet's val is its only evaluated split: the ID column of every table
    with pytest.raises(ConfigError, match=r"experiments\.toy\.finetune\.select: val_worst_group chooses run flyp's "
                                          r"epoch on inet's 'val' split \(finetune\.val_split\), which the "
                                          r"experiment's tables report \(target inet\)"):
        validate(config("imagenet", select="val_worst_group"))
    validate(config("imagenet", select="last"))


def test_a_variant_that_selects_is_named_by_its_key():
    variants = {"flyp_best": {"method": "flyp", "select": "val_worst_group"}}
    with pytest.raises(ConfigError, match=r"experiments\.toy\.finetune\.variants\.flyp_best\.select: "
                                          r"val_worst_group chooses run flyp_best's epoch"):
        validate(config("imagenet", methods=["zeroshot", "flyp_best"], variants=variants))
    # a variant no run uses chooses nothing; zero-shot trains nothing to choose from
    validate(config("imagenet", variants=variants))
    validate(config("imagenet", methods=["zeroshot"], select="val_worst_group"))


def test_waterbirds_val_is_free_to_choose_on_while_tables_show_test():
    validate(config("waterbirds", select="val_worst_group"))
    # ... unless its tables show val
    cfg = config("waterbirds", select="val_worst_group")
    cfg["datasets"]["inet"]["splits"] = ["val"]
    with pytest.raises(ConfigError, match=r"\(target inet\)"):
        validate(cfg)


def test_the_same_folder_under_another_name_is_the_same_split():
    # a group-shift target that reads the training set's own folder and shows its val split
    cfg = config("waterbirds", select="val_worst_group")
    cfg["datasets"]["wb_again"] = {"reader": "waterbirds", "root": "x", "splits": ["val"]}
    cfg["experiments"]["toy"]["evaluate"] = {"groups": ["wb_again"]}
    with pytest.raises(ConfigError, match=r"which the experiment's tables report \(target wb_again\)"):
        validate(cfg)
    cfg["datasets"]["wb_again"]["root"] = "elsewhere"
    validate(cfg)


def test_a_held_out_val_split_that_no_table_shows_is_allowed():
    # an image-folder set evaluated on test, its val held out
    cfg = config("imagefolder", select="val_worst_group", val_split="val")
    cfg["datasets"]["inet"]["classnames"] = ["cat", "dog"]
    validate(cfg)
    cfg["datasets"]["inet"]["splits"] = ["val", "test"]   # its tables still show test only
    validate(cfg)
    cfg["datasets"]["inet"]["splits"] = ["test", "val"]
    validate(cfg)


@pytest.mark.parametrize("splits", [["val"], ["val", "test"], ["test", "val"], ["train", "val"], ["test"]])
def test_the_check_reads_the_split_the_report_shows(splits):
    from stages.report.tables import report_split as report_rule

    assert report_split(splits) == report_rule(splits)


def test_snakemake_refuses_before_any_job(tmp_path):
    work = make_workdir(tmp_path, {**REDUCED, "experiments": {
        **REDUCED["experiments"], "imagenet": {"finetune": {"select": "val_worst_group"}}}})
    proc = snakemake(work, "-n", "results/synthbirds_intask", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key experiments.imagenet.finetune.select: val_worst_group chooses run ft's epoch on imagenet's " \
           "'val' split" in out and "(target imagenet)" in out
    assert not (work / "data").exists()
