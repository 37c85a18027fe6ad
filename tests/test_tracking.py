"""Live tracking of a fine-tuning run (`finetune.track`) on the tiny world: TensorBoard event files
hold the training log's curves and each epoch's val metrics (read back with TensorBoard's own
EventAccumulator), tracking changes no weight, off it imports no tracker and writes nothing, a
resumed run continues its curves, and W&B (offline) and MLflow (a file store) get the same
numbers where they are installed."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import open_clip
import pandas as pd
import pytest
import torch

from helpers import TINY_MODEL_CFG, dataset_config, interrupt_after_first_epoch, make_dataset, make_pools, run_cfg
from stages import datasets
from stages.evaluate import run as evaluate
from stages.finetune.train import train
from stages.toys import eval_config

CURVES = ("loss", "loss_ft", "regularizer", "lambda", "lr", "logit_scale")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny Waterbirds-layout world (16 training images, batch 8, a log row per step), its CLIP
    with patch dropout: training steps draw from torch's random stream, as dropout does in real
    models, so that scoring val between epochs must leave that stream as it was."""
    from stages.embed import run as embed
    from stages.method.models import save_local_dir

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("tracking")
    model_cfg = copy.deepcopy(TINY_MODEL_CFG)
    model_cfg["vision_cfg"]["patch_dropout"] = 0.5
    torch.manual_seed(0)
    (tmp / "clip").mkdir()
    save_local_dir(open_clip.CLIP(**model_cfg), model_cfg, tmp / "clip")
    cfg = dataset_config(make_dataset(tmp / "data"), f"local-dir:{tmp / 'clip'}")
    emb = tmp / "embeddings" / "teacher_text.parquet"
    embed.run(cfg, make_pools(tmp / "pools"), emb)
    return tmp, cfg, str(emb)


def go(world, out, track, on_epoch=None, **overrides):
    tmp, cfg, emb = world
    return train(cfg, run_cfg(cfg["finetune"], "starft", epochs=2, track=track, **overrides), 0, emb, out,
                 progress=False, on_epoch=on_epoch)


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def log_curve(log: pd.DataFrame, key: str) -> list[tuple[int, float]]:
    return [(int(s), float(v)) for s, v in zip(log["step"], log[key])]


def val_record(world, checkpoint: Path) -> dict:
    """The evaluate stage's val metrics of a checkpoint (what the last epoch's val curve must show)."""
    tmp, cfg, _ = world
    check = datasets.check("tiny", "waterbirds", cfg["data"]["root"], templates=cfg["evaluate"]["templates"])
    return evaluate.run(eval_config(cfg, splits=("val",)), {"tiny": check}, "starft", 0,
                        checkpoint=str(checkpoint))["tiny"]["splits"]["val"]


def test_tensorboard_holds_the_training_log_and_each_epochs_val_metrics(world):
    tmp = world[0]
    out = tmp / "tensorboard_run"
    go(world, out, ["tensorboard"])
    scalars = tensorboard_scalars(out / "tensorboard")
    log = pd.read_csv(out / "train_log.csv")
    assert len(log) == 4   # 2 epochs x 2 steps, a row per step
    for key in CURVES:
        assert [s for s, _ in scalars[f"train/{key}"]] == [1, 2, 3, 4], key
        assert [v for _, v in scalars[f"train/{key}"]] == pytest.approx([v for _, v in log_curve(log, key)],
                                                                        rel=1e-6), key
    # lambda's diminishing schedule as it was trained: 0.5 * (1 - 1/2) in epoch 1, 0 in epoch 2
    assert [v for _, v in scalars["train/lambda"]] == [0.25, 0.25, 0.0, 0.0]
    # each epoch's val metrics at the step it ended; the last are the checkpoint's, as evaluate scores them
    assert [s for s, _ in scalars["val/worst_group"]] == [2, 4] == [s for s, _ in scalars["train/epoch"]]
    last = val_record(world, out / "checkpoint.pt")
    for key in ("accuracy", "worst_group", "average"):
        assert scalars[f"val/{key}"][-1][1] == pytest.approx(last[key], abs=1e-4), key


def test_tracking_changes_no_weight_and_off_it_imports_and_writes_nothing(world):
    """The untracked run in a fresh process, so that the modules the stage imports are seen (open_clip's
    are not the stage's: timm, under open_clip, imports wandb whenever it is installed)."""
    tmp, cfg, emb = world
    tracked, untracked = tmp / "tracked", tmp / "untracked"
    go(world, tracked, ["tensorboard"])
    code = (
        "import json, sys, torch, open_clip\n"
        "before = set(sys.modules)\n"
        "from helpers import run_cfg\n"
        "from stages.finetune.train import train\n"
        "torch.set_num_threads(1)\n"
        f"cfg = json.loads({json.dumps(json.dumps(cfg))})\n"
        f"train(cfg, run_cfg(cfg['finetune'], 'starft', epochs=2), 0, {str(emb)!r}, {str(untracked)!r}, progress=False)\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before"
        " if m.split('.')[0] in ('tensorboard', 'wandb', 'mlflow') or m.startswith('torch.utils.tensorboard'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []
    assert sorted(p.name for p in untracked.iterdir()) == ["checkpoint.pt", "train_log.csv"]
    a = torch.load(tracked / "checkpoint.pt", map_location="cpu", weights_only=False)
    b = torch.load(untracked / "checkpoint.pt", map_location="cpu", weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["config"]["track"] == ["tensorboard"] and b["config"]["track"] == []


def test_a_resumed_run_continues_its_curves(world):
    tmp = world[0]
    out = tmp / "resumed"
    interrupt_after_first_epoch(lambda m, o, on_epoch=None, **kw: go(world, o, ["tensorboard"], on_epoch=on_epoch),
                                "starft", out)
    go(world, out, ["tensorboard"])
    scalars = tensorboard_scalars(out / "tensorboard")
    log = pd.read_csv(out / "train_log.csv")
    assert scalars["train/loss"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in log_curve(log, "loss")]
    assert [s for s, _ in scalars["val/accuracy"]] == [2, 4]


def test_a_tracker_that_is_not_installed_stops_the_run_before_its_model(world, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = world[0] / "no_wandb"
    with pytest.raises(Exception, match=r"finetune\.track names wandb, but the wandb package is not installed: "
                                        r"pip install wandb"):
        go(world, out, ["wandb"])
    assert not out.exists()


def wandb_history(path: Path) -> list[dict]:
    """The history rows of an offline W&B run file (run-<id>.wandb): a 7-byte header, then LevelDB
    log records (32 KiB blocks, 7-byte record headers; full, or first ... last parts) of wandb's
    own Record protobuf. wandb >= 0.20 ships no reader of it (its core, in Go, writes it)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, pos, part, rows = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:            # a block's zero-filled tail
            pos += left
            continue
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):       # a full record, or a record's last part
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            part = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_weights_and_biases_offline_gets_the_curves(world, monkeypatch):
    pytest.importorskip("wandb")
    out = world[0] / "wandb_run"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    go(world, out, ["wandb"])
    [run_file] = (out / "wandb").glob("offline-run-*/run-tiny-starft-seed0.wandb")   # project tiny, id per run
    history = wandb_history(run_file)
    log = pd.read_csv(out / "train_log.csv")
    assert [(h["_step"], h["train/loss"]) for h in history] == [
        (s, pytest.approx(v, rel=1e-6)) for s, v in log_curve(log, "loss")]
    assert [h["_step"] for h in history if "val/worst_group" in h] == [2, 4]


def test_mlflow_file_store_gets_the_curves(world, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, store = world[0] / "mlflow_run", world[0] / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow >= 3.7 asks for it (a database is its default)
    go(world, out, ["mlflow"])
    client = MlflowClient(tracking_uri=store.as_uri())
    [run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.run_name == "starft/seed0"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    log = pd.read_csv(out / "train_log.csv")
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(v, rel=1e-6)) for s, v in log_curve(log, "loss")]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/accuracy")] == [2, 4]
