"""The report's data-set protocol table and its marks on columns whose split a run chose on."""

import pandas as pd

from stages.datasets import static_templates
from stages.datasets.protocol import protocol
from stages.report.cli import build, main
from stages.report.protocol import CHOSEN_MARK
from tests.test_report import CONFIG, records, section

IMAGENET_NAMES = [f"class {i}" for i in range(1000)]


def with_sizes(r, sizes):
    """The record with its splits' `n` set: sizes[split] (unequal per split, so a mix-up shows)."""
    return r | {"splits": {s: m | {"n": sizes[s]} for s, m in r["splits"].items()}}


def protocol_records():
    recs = []
    for r in records(methods=("zeroshot", "ft"), targets=("imagenet", "imagenet_v2", "waterbirds")):
        recs.append(with_sizes(r, {"imagenet": {"val": 50_000}, "imagenet_v2": {"val": 7, "test": 10_000},
                                   "waterbirds": {"val": 1_199, "test": 5_794}}[r["target"]]))
    # ObjectNet: 113 classes scored through ImageNet's 1000-class head
    for r in records(methods=("zeroshot", "ft"), targets=("imagenet_v2",)):
        recs.append(with_sizes(r, {"val": 3, "test": 18_574}) | {
            "target": "objectnet", "reader": "objectnet", "classnames": IMAGENET_NAMES,
            "label_names": IMAGENET_NAMES[:113]})
    return recs


DATASETS = {"imagenet": {"reader": "imagenet", "templates": None},
            # a data set this workflow generates, read by a published reader: no published count
            "imagenet_v2": {"reader": "imagenet_v2", "templates": None, "generated": True},
            "objectnet": {"reader": "objectnet", "templates": None},
            "waterbirds": {"reader": "waterbirds", "templates": ["a {}.", "the {}.", "one {}."]}}


def test_protocol_table_at_the_top_states_each_targets_split_classes_images_templates(tmp_path):
    cfg = {**CONFIG, "evaluate": {"shifts": ["imagenet_v2", "objectnet"], "groups": ["waterbirds"]},
           "finetune": {**CONFIG["finetune"], "methods": ["ft"]}}
    build([section(protocol_records(), config=cfg)], "imagenet", tmp_path / "out", datasets=DATASETS)
    md = (tmp_path / "out/report.md").read_text()
    assert md.index("## Data sets") < md.index("## ImageNet")
    block = md[md.index("## Data sets"):md.index("## ImageNet")]
    table = pd.DataFrame([[c.strip() for c in line.split("|")[1:-1]] for line in block.splitlines()
                          if line.startswith("| ") and "Data set" not in line],
                         columns=["Data set", "Role", "Reader", "Split", "Classes", "Images", "Published",
                                  "Templates", "Template source"]).set_index("Data set")
    assert list(table.index) == ["imagenet", "imagenet_v2", "waterbirds", "objectnet"]
    # the split each table shows, and the images scored on that split (not the other's)
    assert table.loc["imagenet", ["Split", "Images"]].tolist() == ["val", "50,000"]
    assert table.loc["waterbirds", ["Role", "Split", "Images", "Classes"]].tolist() == ["group", "test", "5,794", "2"]
    assert table.loc["objectnet", ["Classes", "Images"]].tolist() == ["113 (through a 1000-class head)", "18,574"]
    # beside it, the count the data set publishes for that split (the readers' protocol), if not generated here
    assert table.loc["waterbirds", "Published"] == f"{protocol('waterbirds')['images']['test']:,}" == "5,794"
    assert table.loc["imagenet_v2", "Published"] == "– (generated)"
    # templates: the reader's list (ImageNet's 80, open_clip's), else the config's own
    n = len(static_templates("imagenet"))
    assert n == 80
    assert table.loc["imagenet", ["Templates", "Template source"]].tolist() == [
        str(n), f"reader `imagenet`: {protocol('imagenet')['prompt_source']}"]
    assert table.loc["waterbirds", ["Templates", "Template source"]].tolist() == [
        "3", "config (`datasets.waterbirds.templates`)"]


def test_cli_reads_the_targets_configs_from_the_spec(tmp_path):
    import json
    paths = []
    for i, r in enumerate(records(methods=("zeroshot", "ft"), targets=("imagenet",))):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(r))
        paths.append(str(path))
    spec = {"sections": [{"title": "ImageNet", "experiment": "imagenet", "config": CONFIG, "metrics": paths}],
            "datasets": {"imagenet": {"reader": "imagenet", "templates": ["a {}.", "b {}."]}}}
    main(["--name", "imagenet", "--spec", json.dumps(spec), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out/report.md").read_text()
    assert "| imagenet   | id     | imagenet | val     | 2         | 100      | 50,000      | 2           | config" in md


def selecting(recs, select="val_worst_group", val_split="val"):
    """The records as if their runs chose the checkpoint on `val_split` of the training set."""
    return [r if r["train_config"] is None else
            r | {"train_config": r["train_config"] | {"select": select, "val_split": val_split}} for r in recs]


def test_columns_of_a_split_a_run_chose_on_are_marked(tmp_path):
    # ImageNet is reported at val, the split `select: val_worst_group` chose each run's epoch on
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "select": "val_worst_group"}}
    recs = selecting(records())
    recs += [r | {"method": "lp", "train_config": r["train_config"] | {"method": "lp", "name": "lp"}}
             for r in records(methods=("ft",))]   # the probe: its L2 on a held-out slice of train
    cfg["finetune"]["methods"] = ["lp", *cfg["finetune"]["methods"]]
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    shift = pd.read_csv(tmp_path / "out/table_domain_shift.csv", index_col=0)
    assert list(shift.columns) == [f"imagenet (ID) {CHOSEN_MARK}", "imagenet_v2", "imagenet_r", "Shift mean",
                                   f"Above interpolation line {CHOSEN_MARK}", "Seeds"]
    md = (tmp_path / "out/report.md").read_text()
    assert (f"{CHOSEN_MARK} `imagenet` val, the split these columns show, was used to choose the checkpoint's "
            "epoch (`finetune.select: val_worst_group`) of ft, flyp, wiseft: its numbers are optimistic") in md
    assert ("Chosen by the runs: the checkpoint's epoch (`finetune.select: val_worst_group`) of ft, flyp, wiseft "
            "on `imagenet` val; the linear probe's L2 of lp on `imagenet` train (held-out slice).") in md
    # targets at a split nothing was chosen on keep their names
    for stem in ("table_group_shift", "table_zeroshot", "table_group_shift_waterbirds"):
        assert not any(CHOSEN_MARK in c for c in pd.read_csv(tmp_path / f"out/{stem}.csv").columns), stem


def test_in_task_group_table_is_marked_only_when_it_shows_the_chosen_split(tmp_path):
    intask = {**CONFIG, "train": "waterbirds", "evaluate": {},
              "finetune": {**CONFIG["finetune"], "select": "val_worst_group"}}
    recs = selecting(records(targets=("waterbirds",), experiment="waterbirds_intask", role="id"))
    build([section(recs, config=intask, experiment="waterbirds_intask")], "w", tmp_path / "test")
    # reported at test: chosen on val, nothing to mark
    table = pd.read_csv(tmp_path / "test/table_group_shift_waterbirds.csv")
    assert not any(CHOSEN_MARK in c for c in table.columns)
    # only val evaluated: the table shows the chosen split, every column of it marked
    val_only = [r | {"splits": {"val": r["splits"]["val"]},
                     "wiseft": [p | {"splits": {"val": p["splits"]["val"]}} for p in r.get("wiseft") or ()]}
                for r in recs]
    build([section(val_only, config=intask, experiment="waterbirds_intask")], "w", tmp_path / "val")
    table = pd.read_csv(tmp_path / "val/table_group_shift_waterbirds.csv", index_col=0)
    assert all(c.endswith(CHOSEN_MARK) for c in table.columns if c != "Seeds")
    # a run that selected on another split marks nothing
    other = selecting(val_only, val_split="train")
    build([section(other, config=intask, experiment="waterbirds_intask")], "w", tmp_path / "other")
    table = pd.read_csv(tmp_path / "other/table_group_shift_waterbirds.csv")
    assert not any(CHOSEN_MARK in c for c in table.columns)
