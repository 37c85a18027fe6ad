import pytest
import yaml

from stages.config import ConfigError, load, validate


def test_shipped_configs_validate_and_get_defaults():
    cfg = load("config/synthbirds.yaml", "config/waterbirds.yaml")
    assert set(cfg) == {"synthbirds", "synthbirds_sharp", "waterbirds"}
    # the ablation differs from the demo only by its teacher's fixed logit scale (and its paths)
    sharp, demo = cfg["synthbirds_sharp"], cfg["synthbirds"]
    assert sharp["pretrain"] == {**demo["pretrain"], "logit_scale": 100} and demo["pretrain"]["logit_scale"] is None
    for key in ("finetune", "describe", "evaluate", "seed", "classnames"):
        assert sharp[key] == demo[key], key
    assert sharp["data"]["synthetic"] == demo["data"]["synthetic"]
    assert cfg["waterbirds"]["model"] == {"name": "ViT-B-16-quickgelu", "pretrained": "openai"}
    # a section absent from the file is filled with the schema's defaults
    assert cfg["waterbirds"]["pretrain"]["steps"] > 0
    assert "This is a picture of a {}." in cfg["synthbirds"]["evaluate"]["templates"]


def base():
    return {"toy": {"classnames": ["a", "b"], "data": {"root": "x"}, "model": {"name": "RN50"}}}


def test_unknown_key_is_named():
    cfg = base()
    cfg["toy"]["finetune"] = {"lrr": 1e-5}
    with pytest.raises(ConfigError, match=r"toy\.finetune.*unknown key.*'lrr'"):
        validate(cfg)


def test_wrong_type_is_named():
    cfg = base()
    cfg["toy"]["finetune"] = {"epochs": "ten"}
    with pytest.raises(ConfigError, match=r"toy\.finetune\.epochs.*'ten' is not of type 'integer'"):
        validate(cfg)


def test_missing_required_key():
    cfg = base()
    del cfg["toy"]["model"]
    with pytest.raises(ConfigError, match="'model' is a required property"):
        validate(cfg)


def test_validate_does_not_modify_input(tmp_path):
    cfg = base()
    out = validate(cfg)
    assert "finetune" not in cfg["toy"] and "finetune" in out["toy"]
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert load(p) == out
