"""The export stage: a real run of the tiny world exported, loaded back with open_clip's own
`local-dir:`, scores exactly as the evaluate stage scores the run; WiSE-FT exported at its alpha;
the model card; the Snakemake targets in a dry run."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    CLASSNAMES,
    TEMPLATES,
    TINY_MODEL_CFG,
    dataset_config,
    eval_config,
    make_dataset,
    make_pools,
)
from safetensors import safe_open
from safetensors.torch import load_file

from stages import datasets
from stages.embed import run as embed
from stages.evaluate import run as evaluate
from stages.export.__main__ import main as export_main
from stages.export.layout import ExportError, model_config
from stages.export.run import export
from stages.finetune.runs import RunConfig, run_config
from stages.finetune.train import train
from stages.method.models import load_clip, save_local_dir
from stages.method.scoring import zeroshot_head
from stages.method.zeroshot import zeroshot_weights

# A teacher unlike open_clip's defaults where an export could silently drop something: QuickGELU
# (OpenAI's weights; not in the built-in table) and its own image normalisation.
TEACHER_CFG = {**TINY_MODEL_CFG, "quick_gelu": True}
PREPROCESS = {"mean": [0.3, 0.4, 0.5], "std": [0.2, 0.25, 0.3], "interpolation": "bilinear"}
ALPHA = 0.3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny world and real runs of the fine-tune stage, one epoch each: flyp (no head), ft (a
    linear head) and starft at lambda 2.5; and the training set's data check."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    teacher = open_clip.CLIP(**TEACHER_CFG)
    with torch.no_grad():
        teacher.logit_scale.fill_(float(np.log(30.0)))
    (tmp / "clip").mkdir()
    save_local_dir(teacher, TEACHER_CFG, tmp / "clip", PREPROCESS)
    model = f"local-dir:{tmp / 'clip'}"
    root = make_dataset(tmp / "data")
    job = dataset_config(root, model, wiseft_of="ft", wiseft_alpha=ALPHA)
    emb = tmp / "teacher_text.parquet"
    embed.run(job, make_pools(tmp / "pools"), emb)
    for method, lam in (("flyp", 0.5), ("ft", 0.5), ("starft", 2.5)):
        rc = RunConfig.from_dict({**run_config(job["finetune"], method), "epochs": 1, "schedule": "constant",
                                  "lambda": lam})
        train(job, rc, 0, emb, tmp / method / "seed0", progress=False)
    check = datasets.check("tiny", "waterbirds", str(root), templates=TEMPLATES)
    (tmp / "data_check.json").write_text(json.dumps(check))
    return tmp, job, check


def export_cfg(job, **finetune):
    return {"experiment": "tiny", "model": job["model"], "device": "cpu",
            "data": {"dataset": job["data"]["dataset"], "reader": job["data"]["reader"]},
            "finetune": {"wiseft_alpha": ALPHA, "wiseft_of": "ft", **finetune}}


def split_images(job, transform):
    """The test split's images through `transform`, as the evaluate stage reads them, and labels."""
    ds = datasets.open(job["data"]["reader"], job["data"]["root"], "test", transform)
    items = [ds.dataset[i] for i in range(len(ds.dataset))]
    return torch.stack([item[0] for item in items]), torch.as_tensor([item[1] for item in items])


def clip_logits(model, tokenizer, images, texts):
    """CLIP's logits: the model's logit scale times the image-text cosine similarities."""
    with torch.no_grad():
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        return model.logit_scale.exp() * img @ txt.T


def load_export(folder):
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{folder}")


def test_export_loads_with_open_clip_and_gives_the_runs_logits(world):
    tmp, job, check = world
    out = tmp / "out" / "flyp"
    export(export_cfg(job), "flyp", 0, tmp / "flyp" / "seed0" / "checkpoint.pt", out, check)
    assert {p.name for p in out.iterdir()} == {"open_clip_config.json", "open_clip_model.safetensors", "README.md"}
    assert not list(out.parent.glob(".*tmp"))   # built under a temporary name, renamed
    cfg = json.loads((out / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["quick_gelu"] is True and cfg["preprocess_cfg"]["mean"] == PREPROCESS["mean"]
    assert cfg["starft"]["tokenizer"] == {"tokenizer": "SimpleTokenizer", "hf_tokenizer_name": None,
                                          "context_length": TINY_MODEL_CFG["text_cfg"]["context_length"]}

    exported, preprocess, tokenizer = load_export(out)
    # the run as the evaluate stage loads it: the teacher with the checkpoint's weights
    clip, _, _, _, _ = evaluate.load_run(eval_config(job), "flyp", 0, str(tmp / "flyp" / "seed0" / "checkpoint.pt"))
    run_model = clip.model.eval()
    ckpt = torch.load(tmp / "flyp" / "seed0" / "checkpoint.pt", map_location="cpu", weights_only=False)
    teacher = load_clip(job["model"]["name"]).model.state_dict()
    key = "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert not torch.equal(ckpt["model"][key], teacher[key])    # the run moved away from the teacher
    for k, v in exported.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k

    images, _ = split_images(job, clip.preprocess_val)
    assert torch.equal(split_images(job, preprocess)[0], images)    # the same preprocessing
    texts = [t.format(c) for c in CLASSNAMES for t in TEMPLATES]
    expected = clip_logits(run_model, clip.tokenizer, images, texts)
    torch.testing.assert_close(clip_logits(exported, tokenizer, images, texts), expected, rtol=0, atol=0)
    # and the evaluate stage's own scoring (its zero-shot head) of the same images
    heads = [zeroshot_head(m, tok, CLASSNAMES, TEMPLATES, "cpu") for m, tok in ((run_model, clip.tokenizer),
                                                                               (exported, tokenizer))]
    with torch.no_grad():
        feats = [F.normalize(m.encode_image(images), dim=-1) for m in (run_model, exported)]
    torch.testing.assert_close(heads[1](feats[1]), heads[0](feats[0]), rtol=0, atol=0)


def test_wiseft_export_is_the_interpolation_at_its_alpha_with_the_interpolated_head(world):
    tmp, job, check = world
    ckpt_path = tmp / "ft" / "seed0" / "checkpoint.pt"
    out = tmp / "out" / "wiseft"
    export(export_cfg(job), "wiseft", 0, ckpt_path, out, check)
    exported, preprocess, _ = load_export(out)

    # explicit WiSE-FT: theta = (1 - a) theta0 + a theta1, head likewise with the zero-shot head
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    teacher = load_clip(job["model"]["name"]).model.eval()
    theta0 = teacher.state_dict()
    for k, v in exported.state_dict().items():
        want = (1 - ALPHA) * theta0[k] + ALPHA * ckpt["model"][k] if v.is_floating_point() else ckpt["model"][k]
        torch.testing.assert_close(v, want, rtol=0, atol=0, msg=k)
    key = "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert (exported.state_dict()[key] - ckpt["model"][key]).abs().max() > 1e-6
    zs = zeroshot_weights(teacher, open_clip.get_tokenizer(job["model"]["name"]), CLASSNAMES, TEMPLATES, "cpu")
    tau0 = float(teacher.logit_scale.detach().exp())
    head = load_file(out / "linear_head.safetensors")
    # float32 tolerance: the same products, which the stage may round in another order
    torch.testing.assert_close(head["weight"], (1 - ALPHA) * (zs * tau0) + ALPHA * ckpt["head"]["linear.weight"])
    torch.testing.assert_close(head["bias"], ALPHA * ckpt["head"]["linear.bias"])
    with safe_open(out / "linear_head.safetensors", "pt") as f:
        assert json.loads(f.metadata()["classnames"]) == CLASSNAMES

    # the evaluate stage's WiSE-FT accuracy at alpha is the exported model's with its head
    ev = evaluate.run(eval_config(job, splits=("test",), wiseft_alphas=[0.0, 1.0], wiseft_alpha=ALPHA,
                                  wiseft_of="ft"), {"tiny": check}, "wiseft", 0, str(ckpt_path), wiseft=True)["tiny"]
    assert ev["head"] == "linear"
    images, y = split_images(job, preprocess)
    with torch.no_grad():
        logits = F.normalize(exported.encode_image(images), dim=-1) @ head["weight"].T + head["bias"]
    assert 100 * float((logits.argmax(1) == y).float().mean()) == pytest.approx(ev["splits"]["test"]["accuracy"])


def test_model_card_holds_the_run_and_its_metrics_table(world, tmp_path, capsys):
    """Through the two CLIs, as the rules call them: the evaluate stage writes the run's records,
    the export's card prints the run's keys and the records' numbers."""
    tmp, job, _ = world
    from stages.evaluate.__main__ import main as evaluate_main

    ckpt_path = tmp / "ft" / "seed0" / "checkpoint.pt"
    targets = [{"target": "tiny", "role": "id", "reader": "waterbirds", "root": job["data"]["root"],
                "splits": ["val", "test"], "data_check": str(tmp / "data_check.json")}]
    evaluate_main(["--config", json.dumps({**eval_config(job), "targets": targets}), "--method", "ft", "--seed", "0",
                   "--checkpoint", str(ckpt_path), "--out-dir", str(tmp_path / "eval")])
    record = json.loads((tmp_path / "eval" / "tiny.json").read_text())
    export_main(["--config", json.dumps(export_cfg(job)), "--method", "ft", "--seed", "0", "--checkpoint",
                 str(ckpt_path), "--data-check", str(tmp / "data_check.json"), "--eval-dir", str(tmp_path / "eval"),
                 "--out", str(tmp_path / "export")])
    assert "local-dir:" in capsys.readouterr().out
    card = (tmp_path / "export" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: open_clip\n")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    for line in ("| method | `ft` (base method `ft`", "| λ | not used (ft has no regulariser) |",
                 "| data | `tiny` (reader `waterbirds`) |", "| seed | 0 |",
                 f"| recipe: lr | `{ckpt['config']['lr']}` |", f"| recipe: epochs | `{ckpt['config']['epochs']}` |",
                 "linear_head.safetensors"):
        assert line in card, line
    for split in ("val", "test"):
        m = record["splits"][split]
        row = (f"| tiny | id | {split} | linear | {m['n']} | {m['accuracy']:.2f} | {m['worst_group']:.2f} | "
               f"{m['average']:.2f} | {m['adjusted_average']:.2f} |")
        assert row in card, row
    cfg = json.loads((tmp_path / "export" / "open_clip_config.json").read_text())["starft"]
    assert cfg["method"] == "ft" and cfg["seed"] == 0 and cfg["train_config"] == ckpt["config"]
    assert cfg["head"]["classnames"] == CLASSNAMES and cfg["wiseft_alpha"] is None


def test_a_regularised_run_names_lambda_and_a_missing_evaluation_says_so(world, tmp_path):
    tmp, job, _ = world
    export(export_cfg(job), "starft", 0, tmp / "starft" / "seed0" / "checkpoint.pt", tmp_path / "export",
           eval_dir=tmp_path / "eval")
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| λ | 2.5 (constant schedule, regulariser `star`) |" in card
    assert f"Not evaluated: no evaluation records were found (looked in `{tmp_path / 'eval'}`)" in card


def test_bad_inputs_give_one_error_and_leave_no_folder(world, tmp_path):
    tmp, job, _ = world
    ckpt_path = tmp / "flyp" / "seed0" / "checkpoint.pt"
    out = tmp_path / "export"
    with pytest.raises(ExportError, match="not found"):
        export(export_cfg(job), "flyp", 0, tmp_path / "missing.pt", out)
    with pytest.raises(ExportError, match="the checkpoint of run flyp seed 0, exported as starft seed 0"):
        export(export_cfg(job), "starft", 0, ckpt_path, out)
    with pytest.raises(ExportError, match="the checkpoint of run flyp seed 0, exported as wiseft seed 0"):
        export(export_cfg(job), "wiseft", 0, ckpt_path, out)    # wiseft_of is ft
    # another run's evaluation records would put its numbers under this model's name
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "tiny.json").write_text(json.dumps({"method": "ft", "seed": 0, "splits": {}}))
    with pytest.raises(ExportError, match="tiny.json: the record of ft seed 0, not of the exported run flyp seed 0"):
        export(export_cfg(job), "flyp", 0, ckpt_path, out, eval_dir=tmp_path / "eval")
    # a checkpoint of another teacher
    other = tmp_path / "clip"
    other.mkdir()
    save_local_dir(open_clip.CLIP(**TEACHER_CFG), TEACHER_CFG, other, PREPROCESS)
    with pytest.raises(ExportError, match="the teacher changed since the run"):
        export({**export_cfg(job), "model": {"name": f"local-dir:{other}"}}, "flyp", 0, ckpt_path, out)
    # WiSE-FT of a head without the class prompts of its zero-shot head
    with pytest.raises(ExportError, match="needs the training set's data check"):
        export(export_cfg(job), "wiseft", 0, tmp / "ft" / "seed0" / "checkpoint.pt", out)
    assert not out.exists() and not list(tmp_path.glob(".export*"))


@pytest.mark.slow   # two dry runs of the whole workflow: ~10 s each on a busy 2-core machine
def test_snakemake_lists_the_export_jobs(tmp_path):
    """The experiment's target exports every fine-tuned run (WiSE-FT included, zero-shot not), one
    job per run folder, each run evaluated first; zero-shot has no export target."""
    from pipeline import REDUCED_RUNS, make_workdir, reduced, snakemake
    from test_describe_workflow import dry_run_jobs

    runs = {**REDUCED_RUNS, "finetune": {**REDUCED_RUNS["finetune"], "methods": ["zeroshot", "ft", "starft"],
                                         "seeds": [0, 1], "wiseft_of": "ft", "warmup_steps": 1}}
    work = make_workdir(tmp_path, reduced(**runs))
    dry = snakemake(work, "-n", "results/runs/synthbirds_intask/export.done").stdout
    jobs = dry_run_jobs(dry)
    exports = {(j["wildcards"]["method"], j["wildcards"]["seed"]): j["output"] for j in jobs if j["rule"] == "export"}
    assert sorted(exports) == [(m, s) for m in ("ft", "starft", "wiseft") for s in ("0", "1")]
    assert exports["starft", "1"] == ["results/runs/synthbirds_intask/starft/seed1/export"]
    evaluated = {o for j in jobs if j["rule"] == "evaluate" for o in j["output"]}
    assert {f"results/runs/synthbirds_intask/{m}/seed{s}/eval" for m, s in exports} <= evaluated
    assert "rule export_experiment:" in dry
    refused = snakemake(work, "-n", "results/runs/synthbirds_intask/zeroshot/seed0/export", check=False)
    assert refused.returncode != 0 and "No rule to produce" in refused.stdout + refused.stderr


def test_a_builtin_models_config_takes_its_activation_from_the_loaded_model():
    """A built-in name's table may lack what its weights were loaded with (OpenAI's tag needs
    QuickGELU); the export describes the model as it was built, whatever the name said."""
    quick, plain = open_clip.CLIP(**TEACHER_CFG), open_clip.CLIP(**TINY_MODEL_CFG)
    table = open_clip.get_model_config("ViT-B-16")
    assert "quick_gelu" not in table
    assert model_config("ViT-B-16", quick) == {**table, "quick_gelu": True}
    assert model_config("ViT-B-16", plain) == table
    with pytest.raises(ExportError, match="no open_clip configuration"):
        model_config("ViT-X-999", plain)


def test_an_export_cut_short_leaves_no_folder(world, tmp_path, monkeypatch):
    """The weights are written before the card: a failure there must not leave a folder that
    open_clip would load as complete."""
    tmp, job, _ = world
    from stages.export import card

    def broken_card(*args):
        raise OSError("disk full")

    monkeypatch.setattr(card, "model_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        export(export_cfg(job), "flyp", 0, tmp / "flyp" / "seed0" / "checkpoint.pt", tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_the_folder_as_uploaded_to_the_hub_loads_with_hf_hub(world, tmp_path, monkeypatch):
    """What `huggingface_hub.upload_folder` puts in a repository is the folder's files: served
    from a hub cache holding them (offline), `hf-hub:<repo>` loads the same model."""
    import shutil

    from huggingface_hub import constants

    tmp, job, check = world
    out = tmp / "out" / "hub"
    export(export_cfg(job), "flyp", 0, tmp / "flyp" / "seed0" / "checkpoint.pt", out, check)
    repo, commit = tmp_path / "models--someone--starft-tiny", "0" * 40
    shutil.copytree(out, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub = open_clip.create_model("hf-hub:someone/starft-tiny", cache_dir=str(tmp_path)).state_dict()
    local = open_clip.create_model(f"local-dir:{out}").state_dict()
    assert hub.keys() == local.keys() and all(torch.equal(hub[k], local[k]) for k in hub)
    assert isinstance(open_clip.get_tokenizer("hf-hub:someone/starft-tiny", cache_dir=str(tmp_path)),
                      open_clip.tokenizer.SimpleTokenizer)
