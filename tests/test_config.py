import pytest
import yaml

from stages.config import ConfigError, generated_roots, load, run_seeds, target_roles, train_job, validate


def test_shipped_configs_validate_and_get_defaults():
    cfg = load("config/synthbirds.yaml", "config/paper.yaml")
    assert set(cfg["experiments"]) == {"synthworld", "synthworld_ablation", "synthworld_oracle",
                                       "synthbirds_intask", "synthbirds_flat", "imagenet",
                                       "imagenet_ablation", "waterbirds_intask", "transfer_caltech101",
                                       "transfer_stanford_cars", "transfer_flowers102", "transfer_sun397"}
    # the temperature ablation differs from the demo's teacher only by its learned logit scale
    ds = cfg["datasets"]
    assert ds["synthbirds_flat"]["pretrain"] == {**ds["synthbirds"]["pretrain"], "logit_scale": None}
    assert ds["synthbirds"]["pretrain"]["logit_scale"] == 100
    assert ds["synthbirds_flat"]["synthetic"] == ds["synthbirds"]["synthetic"]
    flat, intask = cfg["experiments"]["synthbirds_flat"], cfg["experiments"]["synthbirds_intask"]
    for key in ("describe", "evaluate", "seed"):
        assert flat[key] == intask[key], key
    assert flat["finetune"] == {**intask["finetune"], "methods": flat["finetune"]["methods"]}
    # one LLM pass: the in-task experiments use the source experiment's pools
    assert flat["describe"]["pools_of"] == intask["describe"]["pools_of"] == "synthworld"
    # the demo shows the ablation's in-task experiment only with its methods
    demo = cfg["reports"]["synthbirds"]
    assert [s["experiment"] for s in demo] == ["synthworld", "synthbirds_intask"]
    assert set(demo[1]["methods"]) < set(intask["finetune"]["methods"]) | {"zeroshot", "wiseft"}
    imagenet = cfg["experiments"]["imagenet"]
    assert imagenet["model"] == {"name": "ViT-B-16-quickgelu", "pretrained": "openai"}
    # the paper's protocol: trained on ImageNet, evaluated on its five shifts, two group-shift
    # sets and four zero-shot sets
    roles = target_roles(imagenet)
    assert roles["imagenet"] == "id" and len(roles) == 12
    assert [t for t, r in roles.items() if r == "shift"] == ["imagenet_v2", "imagenet_sketch", "imagenet_r",
                                                             "imagenet_a", "objectnet"]
    assert cfg["reports"]["waterbirds"][0] == {"experiment": "imagenet", "targets": ["waterbirds"], "methods": None,
                                               "title": cfg["reports"]["waterbirds"][0]["title"]}
    # the training job resolves class names and templates from the reader (open_clip's ImageNet)
    job = train_job(cfg, "imagenet")
    assert len(job["classnames"]) == 1000 and len(job["evaluate"]["templates"]) == 80
    assert train_job(cfg, "synthbirds_intask")["evaluate"]["templates"][0] == "This is a picture of a {}."
    # the synthetic protocol is the same kind of experiment: its source task's class names are the
    # world's, and the rules write its shifted sets where their data sets are read
    from stages.synthetic.source import CLASSNAMES
    assert train_job(cfg, "synthworld")["classnames"] == list(CLASSNAMES)
    assert {r: role for r, role in target_roles(cfg["experiments"]["synthworld"]).items()} == {
        "synthsource": "id", "synth_v2": "shift", "synth_sketch": "shift", "synth_rendition": "shift",
        "synth_hard": "shift", "synthbirds": "group", "synth_scenes": "zeroshot"}
    roots = generated_roots(cfg)
    assert all(roots[cfg["datasets"][d]["root"]] == "synth_source" for d in ("synthsource", "synth_v2", "synth_hard"))
    # the source task's superclasses are its species' own classes (landbird, waterbird)
    from stages.synthetic.species import SPECIES_BY_NAME
    source = cfg["datasets"]["synthsource"]
    assert source["superclasses"] == [["landbird", "waterbird"][SPECIES_BY_NAME[c].y] for c in source["classnames"]]
    # the paper's ablations run in its protocol: trained on the source task, SynthBirds zero-shot
    for name in ("synthworld_ablation", "synthworld_oracle"):
        e = cfg["experiments"][name]
        assert e["train"] == "synthsource" and e["evaluate"]["groups"] == ["synthbirds"], name
    assert set(cfg["experiments"]["synthworld_oracle"]["describe"]["files"].values()) == {
        f"data/oracle_pools/{t}.txt" for t in ("background", "texture", "quality")}
    assert roots["data/synthbirds/dataset"] == "synth_world" and "data/imagenet" not in roots


def test_zero_shot_is_one_run_under_the_first_seed():
    experiment = {"finetune": {"seeds": [3, 1, 2]}}
    assert run_seeds(experiment, "zeroshot") == [3]
    assert run_seeds(experiment, "flyp") == run_seeds(experiment, "wiseft") == [3, 1, 2]


def base():
    return {"datasets": {"d": {"reader": "waterbirds", "root": "x"}},
            "experiments": {"toy": {"train": "d", "model": {"name": "RN50"}}}}


def test_unknown_key_is_named():
    cfg = base()
    cfg["experiments"]["toy"]["finetune"] = {"lrr": 1e-5}
    with pytest.raises(ConfigError, match=r"experiments\.toy\.finetune.*unknown key.*'lrr'"):
        validate(cfg)


def test_wrong_type_is_named():
    cfg = base()
    cfg["experiments"]["toy"]["finetune"] = {"epochs": "ten"}
    with pytest.raises(ConfigError, match=r"experiments\.toy\.finetune\.epochs.*'ten' is not of type 'integer'"):
        validate(cfg)


def test_missing_required_key():
    cfg = base()
    del cfg["experiments"]["toy"]["model"]
    with pytest.raises(ConfigError, match="'model' is a required property"):
        validate(cfg)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["experiments"]["toy"].update(train="nope"),
     r"experiments\.toy\.train: unknown data set 'nope'; known data sets: d"),
    (lambda c: c["experiments"]["toy"].update(evaluate={"shifts": ["v2"]}),
     r"experiments\.toy\.evaluate\.shifts: unknown data set 'v2'"),
    (lambda c: c["datasets"].update(c101={"reader": "imagefolder", "root": "y"}) or c["experiments"]["toy"].update(train="c101"),
     r"datasets\.c101\.root: experiment toy trains on it, and reader 'imagefolder' names its classes after the class "
     r"folders of y/train, which is not there: put the tree there \(y/\{train,val,test\}/<class>/\*\.jpg\) or list "
     r"datasets\.c101\.classnames"),
    (lambda c: c["datasets"].update(s={"reader": "imagefolder", "root": "data/s/source", "source": {}})
     or c["experiments"]["toy"].update(train="s"),
     r"datasets\.s\.classnames: experiment toy trains on it, and reader 'imagefolder' knows its class names only from "
     r"the data: list them"),
    (lambda c: c["datasets"]["d"].update(classnames_file="names.csv"),
     r"datasets\.d\.classnames_file: reader 'waterbirds' does not name its classes after folders"),
    (lambda c: c["datasets"].update(f={"reader": "imagefolder", "root": "y", "classnames": ["a", "b"],
                                       "classnames_file": "names.csv"}),
     r"datasets\.f\.classnames_file: give classnames or classnames_file, not both"),
    (lambda c: c["datasets"].update(f={"reader": "imagefolder", "root": "y", "classnames_file": "no/names.csv"}),
     r"datasets\.f\.classnames_file: no file no/names\.csv \(a CSV with the header folder,name"),
    (lambda c: c.update(reports={"toy": [{"experiment": "toy", "title": "t"}]}),
     r"reports\.toy: an experiment has that name"),
    (lambda c: c.update(reports={"r": [{"experiment": "toy", "title": "t", "targets": ["x"]}]}),
     r"reports\.r\.0\.targets: \['x'\] are not targets of experiment toy"),
    (lambda c: c["datasets"].update(w={"reader": "imagenet", "root": "data/w/dataset", "synthetic": {}}),
     r"datasets\.w: a synthetic data set is written by the synth_world rule"),
    (lambda c: c["datasets"].update(s={"reader": "waterbirds", "root": "data/s/source", "source": {}}),
     r"datasets\.s: the synthetic source task is written by the synth_source rule: reader 'imagefolder'"),
    (lambda c: c["experiments"]["toy"].update(model={"name": "local-dir:data/d/clip"}),
     r"experiments\.toy\.model\.name: data/d/clip is the tiny CLIP the pretrain rule builds for a synthetic data set"),
    (lambda c: c.update(reports={"r": [{"experiment": "toy", "title": "t", "methods": ["flyp", "lpft_x"]}]}),
     r"reports\.r\.0\.methods: \['lpft_x'\] are neither methods nor variants of experiment toy"),
    (lambda c: c["experiments"]["toy"].update(describe={"pools_of": "toy"}),
     r"experiments\.toy\.describe\.pools_of: 'toy' is not another experiment that writes its own pools"),
    (lambda c: c["experiments"].update(toy2={"train": "d", "model": {"name": "RN50"},
                                             "describe": {"types": ["background", "style"], "pools_of": "toy"}}),
     r"experiments\.toy2\.describe\.types: \['style'\] are not types of the pools of experiment toy"),
    (lambda c: c.update(reports={"tables": [{"experiment": "toy", "title": "t"}]}),
     r"reports\.tables: results/tables holds the single-table targets; choose another name"),
    (lambda c: c["experiments"].update(runs=c["experiments"]["toy"]),
     r"experiments\.runs: results/runs holds every experiment's runs; choose another name"),
    (lambda c: c["datasets"]["d"].update(classnames=["only one"]), r"datasets\.d\.classnames: .* is too short"),
    (lambda c: c["datasets"]["d"].update(templates=["no slot"]), r"datasets\.d\.templates\.0: 'no slot' does not match"),
    # one superclass per class (Waterbirds' reader: 2 classes), and the superclass mask needs them
    (lambda c: c["datasets"]["d"].update(superclasses=["bird", "bird", "bird"]),
     r"datasets\.d\.superclasses: 3 superclasses for the 2 classes \(landbird, waterbird"),
    (lambda c: c["experiments"]["toy"].update(finetune={"variants": {"v": {"method": "starft", "star_mask": "superclass"}}}),
     r"experiments\.toy\.finetune\.variants\.v\.star_mask: superclass needs the superclass of each class of the "
     r"training set: datasets\.d\.superclasses"),
])
def test_cross_references_are_named(change, message):
    cfg = base()
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_validate_does_not_modify_input(tmp_path):
    cfg = base()
    out = validate(cfg)
    assert "finetune" not in cfg["experiments"]["toy"] and "finetune" in out["experiments"]["toy"]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert load(p) == out


# ---------------------------------------------------------------------------------------------
# One definition per idea: what the schema lists comes from the registries, a variant's keys are
# the finetune keys themselves, and a run's configuration is the schema's keys, defaults filled.


def test_the_schemas_readers_are_the_registrys():
    from stages.config import load_schema
    from stages.datasets import READERS

    assert load_schema()["$defs"]["dataset"]["properties"]["reader"]["enum"] == list(READERS)


def test_a_variant_takes_each_finetune_key_by_reference_and_no_default():
    from stages.config import load_schema
    from stages.finetune.runs import HPARAMS

    schema = load_schema()["$defs"]["finetune"]["properties"]
    variant = schema["variants"]["additionalProperties"]["properties"]
    assert set(variant) == {"method", *HPARAMS}
    assert all(variant[k] == {"$ref": f"#/$defs/finetune/properties/{k}"} for k in HPARAMS)
    # the rules are the finetune key's own: a bad value in a variant is refused like the same value
    # at the experiment's level; an absent key stays absent (the experiment's value applies)
    cfg = base()
    cfg["experiments"]["toy"]["finetune"] = {"methods": ["v"], "variants": {"v": {"method": "starft", "schedule": "cosine"}}}
    with pytest.raises(ConfigError, match=r"finetune\.variants\.v\.schedule: 'cosine' is not one of"):
        validate(cfg)
    cfg["experiments"]["toy"]["finetune"]["variants"]["v"] = {"method": "starft", "lambda": 2}
    assert validate(cfg)["experiments"]["toy"]["finetune"]["variants"]["v"] == {"method": "starft", "lambda": 2}


def test_a_run_configuration_is_the_schemas_run_keys_with_their_defaults():
    from stages.config import load_schema
    from stages.finetune.runs import HPARAMS, RUNTIME, RunConfig, run_config

    schema = load_schema()["$defs"]["finetune"]["properties"]
    experiment_keys = {"methods", "variants", "seeds", "wiseft_alphas", "wiseft_of", "wiseft_alpha"}
    assert set(HPARAMS) | set(RUNTIME) == set(schema) - experiment_keys and not set(HPARAMS) & set(RUNTIME)
    bare = RunConfig.from_dict({"name": "starft", "method": "starft"}).as_dict()
    # num_workers' null default is resolved by decode (cpu: 12 workers per GPU, runs.loader_workers)
    assert schema["num_workers"]["default"] is None and bare["num_workers"] == 12
    assert {k: bare[k] for k in HPARAMS + RUNTIME} == {**{k: schema[k]["default"] for k in HPARAMS + RUNTIME},
                                                       "num_workers": 12}
    # what the Snakefile hands a job is the same configuration
    finetune = validate(base())["experiments"]["toy"]["finetune"]
    assert RunConfig.from_dict(run_config(finetune, "starft")).as_dict() == bare


def test_an_imagefolder_training_set_is_named_after_its_folders_or_its_names_file(tmp_path):
    from tests import trees

    root = trees.write_imagefolder(tmp_path / "tree")        # blue_jay, owl, swan
    cfg = base()
    cfg["datasets"]["mine"] = {"reader": "imagefolder", "root": str(root)}
    cfg["experiments"]["toy"]["train"] = "mine"
    assert train_job(validate(cfg), "toy")["classnames"] == ["blue jay", "owl", "swan"]
    names = tmp_path / "names.csv"
    names.write_text("folder,name\nswan,mute swan\nowl,barn owl\nblue_jay,Cyanocitta cristata\n")
    cfg["datasets"]["mine"]["classnames_file"] = str(names)
    assert train_job(validate(cfg), "toy")["classnames"] == ["Cyanocitta cristata", "barn owl", "mute swan"]


@pytest.mark.parametrize("text, message", [
    ("name,folder\nowl,owl\n", r"names\.csv must start with the header folder,name"),
    ("folder,name\nowl,barn owl\nswan\n", r"names\.csv line 3: expected folder,name, got \['swan'\]"),
    ("folder,name\nowl,barn owl\nowl,eagle owl\n", r"names\.csv line 3: folder 'owl' is named twice"),
])
def test_a_class_names_file_that_cannot_be_read_is_named_with_its_line(tmp_path, text, message):
    names = tmp_path / "names.csv"
    names.write_text(text)
    cfg = base()
    cfg["datasets"]["mine"] = {"reader": "imagefolder", "root": "y", "classnames_file": str(names)}
    with pytest.raises(ConfigError, match=r"config key datasets\.mine\.classnames_file: .*" + message):
        validate(cfg)


def raw(*paths, override=None):
    """The configuration files merged as Snakemake merges --configfile's, before validation."""
    from stages.config import merge

    cfg = {}
    for p in paths:
        merge(cfg, yaml.safe_load(open(p)))
    return merge(cfg, override or {})


def test_an_override_of_the_parent_reaches_the_child_and_the_childs_own_keys_win():
    override = {"experiments": {"imagenet": {"finetune": {"processes": 8, "seeds": [0, 1, 2, 3], "lr": 2e-5},
                                             "evaluate": {"num_workers": 3}}}}
    exps = validate(raw("config/synthbirds.yaml", "config/paper.yaml", override=override))["experiments"]
    child, parent = exps["imagenet_ablation"], exps["imagenet"]
    assert child["inherit"] == "imagenet"
    assert child["finetune"]["processes"] == parent["finetune"]["processes"] == 8
    assert child["finetune"]["lr"] == 2e-5 and child["evaluate"]["num_workers"] == 3
    assert child["finetune"]["seeds"] == [0]                   # its own list replaces the parent's
    assert child["evaluate"]["groups"] == ["waterbirds"] and child["evaluate"]["zeroshot"] == []
    # mappings merge key by key: the parent's variants and the child's
    assert {"starft_all", "flyp_kl_student", "starft_lam5"} <= set(child["finetune"]["variants"])
    # an override of the child stays the child's
    exps = validate(raw("config/synthbirds.yaml", "config/paper.yaml", override={
        "experiments": {"imagenet_ablation": {"finetune": {"processes": 4}}}}))["experiments"]
    assert exps["imagenet_ablation"]["finetune"]["processes"] == 4 and exps["imagenet"]["finetune"]["processes"] == 1


def test_inheritance_chains_and_a_default_of_the_child_does_not_hide_the_parents_setting():
    cfg = base()
    cfg["experiments"]["toy"]["finetune"] = {"epochs": 3}
    cfg["experiments"]["mid"] = {"inherit": "toy", "finetune": {"lr": 0.5}}
    cfg["experiments"]["leaf"] = {"inherit": "mid", "seed": 4}
    leaf = validate(cfg)["experiments"]["leaf"]
    assert (leaf["finetune"]["epochs"], leaf["finetune"]["lr"], leaf["seed"], leaf["train"]) == (3, 0.5, 4, "d")


@pytest.mark.parametrize("links, message", [
    ({"toy": "nope"}, r"^config key experiments\.toy\.inherit: 'nope' is not an "
                      r"experiment; known: a, b, toy$"),
    ({"a": "b", "b": "a"}, r"^config key experiments\.a\.inherit: inheritance cycle "
                           r"a -> b -> a$"),
    ({"toy": "toy"}, r"config key experiments\.toy\.inherit: inheritance cycle toy -> toy$"),
], ids=["unknown parent", "cycle", "itself"])
def test_an_unknown_parent_and_a_cycle_are_named(links, message):
    cfg = base()
    cfg["experiments"].update(a={"train": "d", "model": {"name": "RN50"}}, b={"train": "d", "model": {"name": "RN50"}})
    for name, parent in links.items():
        cfg["experiments"][name]["inherit"] = parent
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
