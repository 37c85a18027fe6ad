"""Pre-flight (stages/preflight.py): what would stop a GPU job fails before any: a misspelt teacher
at parse time (the dry run), a batch or warm-up that the data check's image count cannot hold in
rule preflight, a missing describe interpreter in rule preflight_describe; each one line naming
the config key."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from pipeline import REDUCED, make_workdir, snakemake

from stages import preflight
from stages.config import merge
from stages.datasets import datacheck
from stages.finetune.runs import run_config
from stages.toys import config as toy_config
from stages.toys import make_dataset


def test_a_misspelt_model_fails_the_dry_run_with_a_suggestion(tmp_path):
    work = make_workdir(tmp_path, merge(json.loads(json.dumps(REDUCED)), {"experiments": {
        "imagenet": {"model": {"name": "ViT-B-16-quickgelo"}}}}))
    proc = snakemake(work, "-n", "results/synthbirds", check=False)
    assert proc.returncode != 0
    assert ("config key experiments.imagenet.model.name: 'ViT-B-16-quickgelo' is not an open_clip model "
            "(open_clip.list_models()); did you mean 'ViT-B-16-quickgelu'") in proc.stdout + proc.stderr


@pytest.mark.parametrize("model, message", [
    ({"name": "ViT-B-16-quickgelu", "pretrained": "opnai"},
     r"^config key e\.model\.pretrained: 'opnai' is not a pretrained tag of open_clip model ViT-B-16-quickgelu "
     r"\(known: openai, .*\); did you mean 'openai'\?$"),
    ({"name": "ViT-B-16-quickgelu", "pretrained": "laion400m_e32"}, r"'laion400m_e32' is not a pretrained tag"),
    ({"name": "local-dir:no/such/folder"},
     r"^config key e\.model\.name: the local-dir: folder no/such/folder does not exist and no rule writes it"),
], ids=["tag", "another model's tag", "local-dir"])
def test_a_model_outside_open_clips_registry_is_named(model, message):
    assert re.search(message, preflight.model_problem(model, "e.model"))


@pytest.mark.parametrize("model", [
    {"name": "ViT-B-16-quickgelu", "pretrained": "openai"},
    {"name": "ViT-B/16", "pretrained": "OpenAI"},            # open_clip's own folding of both
    {"name": "RN50", "pretrained": None},
    {"name": "hf-hub:timm/vit_base_patch16_clip_224.openai"},   # the hub decides
    {"name": "local-dir:data/synthbirds/clip"},              # the pretrain rule writes it
    {"name": "local-dir:results/runs/imagenet/flyp/seed0/export"},   # so does the export rule
], ids=["registry", "folded", "no tag", "hf-hub", "world clip", "export"])
def test_a_known_model_passes(model):
    assert preflight.model_problem(model, "e.model") is None


@pytest.fixture(scope="module")
def eighteen(tmp_path_factory):
    """An 18-image training split, as the data check counts it."""
    root = make_dataset(tmp_path_factory.mktemp("tiny"), n_per_split=(18, 4, 4), size=8)
    return root, datacheck.check("tiny", "waterbirds", root)


def schedule(root, check, tmp_path, **finetune):
    ft = toy_config(root, "RN50", **finetune)["experiments"]["tiny"]["finetune"]
    runs = {m: run_config(ft, m) for m in ("flyp", "starft")}
    (tmp_path / "check.json").write_text(json.dumps(check))
    return subprocess.run([sys.executable, "-m", "stages.preflight", "schedule", "--experiment", "tiny", "--runs",
                           json.dumps(runs), "--data-check", str(tmp_path / "check.json"), "--split", "train",
                           "--out", str(tmp_path / "out" / "preflight.json")], capture_output=True, text=True)


@pytest.mark.parametrize("finetune, line", [
    ({"batch_size": 512, "processes": 3},
     "config key experiments.tiny.finetune.batch_size=512 is not divisible by the 3 processes (run flyp, 3 processes)"),
    ({"batch_size": 512, "processes": 2},
     "config key experiments.tiny.finetune.batch_size=512 exceeds the 18 training images (run flyp, 2 processes)"),
    ({"batch_size": 8, "processes": 2, "epochs": 2, "warmup_steps": 4},
     "config key experiments.tiny.finetune.warmup_steps=4 is not shorter than the run of flyp: 18 training images / "
     "batch 8 = 2 steps per epoch x 2 epochs = 4 steps; use e.g. warmup_steps: 0 (run flyp, 2 processes)"),
], ids=["indivisible", "batch over the images", "warm-up"])
def test_a_schedule_the_data_cannot_hold_stops_the_preflight(eighteen, tmp_path, finetune, line):
    root, check = eighteen
    assert check["splits"]["train"]["n_images"] == 18
    proc = schedule(root, check, tmp_path, **finetune)
    assert proc.returncode == 1 and proc.stderr.splitlines()[0] == line
    assert len(proc.stderr.splitlines()) == 2   # one line per run: flyp and starft
    assert not (tmp_path / "out").exists()       # no record: the probe and fine-tuning jobs wait on it


def test_a_key_a_variant_sets_is_named_as_the_variants(eighteen):
    root, check = eighteen
    ft = toy_config(root, "RN50", batch_size=8, variants={"big": {"method": "flyp", "batch_size": 32}},
                    methods=["flyp", "big"])["experiments"]["tiny"]["finetune"]
    runs = {m: run_config(ft, m) for m in ("flyp", "big")}
    assert preflight.schedule_problems("tiny", runs, check, "train", ft["variants"]) == [
        "config key experiments.tiny.finetune.variants.big.batch_size=32 exceeds the 18 training images "
        "(run big, 1 process)"]


def test_a_schedule_that_fits_is_recorded(eighteen, tmp_path):
    root, check = eighteen
    proc = schedule(root, check, tmp_path, batch_size=8, processes=2, epochs=2, warmup_steps=1)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out/preflight.json").read_text())
    assert record == {"experiment": "tiny", "split": "train", "n_images": 18, "runs": ["flyp", "starft"]}


def test_a_missing_describe_interpreter_is_named(tmp_path):
    describe = {"backend": "vllm", "python": str(tmp_path / "env/bin/python")}
    assert preflight.describe_problems("e", describe) == [
        f"config key experiments.e.describe.python: the describe environment's interpreter {tmp_path}/env/bin/python "
        "does not exist: build it with `python -m stages.describe env gpu` (or cpu), or set describe.python"]
    (tmp_path / "env/bin").mkdir(parents=True)
    (tmp_path / "env/bin/python").touch()
    assert preflight.describe_problems("e", describe) == []
    assert preflight.describe_problems("e", {"backend": "file", "python": "nope"}) == []


@pytest.mark.slow
def test_the_preflight_rule_stops_before_any_gpu_job(tmp_path):
    """Through Snakemake: the data check counts 18 images, the preflight refuses batch 512 on 3
    processes with one line, and no fine-tuning job starts."""
    root = make_dataset(tmp_path / "tiny", n_per_split=(18, 4, 4), size=8)
    (tmp_path / "work").mkdir()
    work = make_workdir(tmp_path / "work", merge(json.loads(json.dumps(REDUCED)), {
        "datasets": {"tiny": {"reader": "waterbirds", "root": str(root)}},
        "experiments": {"tiny": {"train": "tiny", "domain": "birds", "model": {"name": "RN50"},
                                 "describe": {"backend": "file", "files": {"background": "bg.txt"}, "types": ["background"], "min_pool": 2},
                                 "finetune": {"methods": ["zeroshot", "flyp"], "seeds": [0], "batch_size": 512,
                                              "processes": 3}}}}))
    (work / "bg.txt").write_text("a photo of a {} in the forest.\na photo of a {} on a lake.\n")
    proc = snakemake(work, "results/runs/tiny/flyp/seed0/checkpoint.pt", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "localrule preflight:" in out
    assert ("config key experiments.tiny.finetune.batch_size=512 is not divisible by the 3 processes "
            "(run flyp, 3 processes)") in out
    assert (work / "data/tiny/data_check.json").is_file() and not (work / "data/tiny/preflight.json").exists()
    assert "rule finetune:" not in out   # never started


@pytest.mark.parametrize("model, marker", [
    ({"name": "ViT-B/16", "pretrained": "openai"}, "data/models/open_clip/fetched/ViT-B-16/openai.json"),
    ({"name": "ViT-B-16-quickgelu", "pretrained": None}, None),     # random weights: nothing to fetch
    ({"name": "hf-hub:timm/vit_base_patch16_clip_224.openai", "pretrained": None}, None),
    ({"name": "local-dir:data/synthbirds/clip", "pretrained": None}, None),
], ids=["registry", "no tag", "hf-hub", "local-dir"])
def test_only_a_registry_teacher_is_fetched(model, marker):
    from stages.method.clip_cache import fetched_marker

    assert fetched_marker(model) == marker


@pytest.fixture
def weights_server():
    """A real HTTP server on 127.0.0.1 publishing one weights file."""
    from http.server import BaseHTTPRequestHandler

    from helpers import http_server

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.requests.append(self.path)
            body = self.server.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http_server(Handler, files={"/weights/tiny-test.pt": b"not really a checkpoint" * 100},
                     requests=[]) as srv:
        yield srv


def test_the_teacher_is_fetched_once_into_the_cache_the_jobs_read(weights_server, tmp_path, monkeypatch):
    """rule fetch_clip's command against a registry entry served over HTTP: the file lands where
    open_clip's own download (which create_model_and_transforms runs) finds it, and is not fetched
    again."""
    from open_clip import pretrained as registry

    monkeypatch.setitem(registry._PRETRAINED, "RN50", {**registry._PRETRAINED["RN50"], "localtest": registry._pcfg(
        url=weights_server.url + "/weights/tiny-test.pt")})
    cache, out = tmp_path / "cache", tmp_path / "fetched/RN50/localtest.json"
    preflight.main(["fetch-clip", "--name", "RN50", "--pretrained", "localtest", "--cache-dir", str(cache),
                    "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["file"] == str(cache / "tiny-test.pt") and record["bytes"] == 2300
    assert (cache / "tiny-test.pt").read_bytes() == weights_server.files["/weights/tiny-test.pt"]
    assert weights_server.requests == ["/weights/tiny-test.pt"]
    # what a job's load_clip then does: open_clip's download with the same cache finds the file
    assert registry.download_pretrained(registry.get_pretrained_cfg("RN50", "localtest"),
                                        cache_dir=str(cache)) == str(cache / "tiny-test.pt")
    assert weights_server.requests == ["/weights/tiny-test.pt"]   # no second request


def test_every_job_loads_the_teacher_from_the_workflows_cache(monkeypatch):
    import open_clip

    from stages.method import models
    from stages.method.clip_cache import CLIP_CACHE

    seen = {}

    def create(name, **kwargs):
        seen.update(kwargs)
        return None, None, None

    monkeypatch.setattr(open_clip, "create_model_and_transforms", create)
    models.load_clip("RN50", "openai")
    assert seen["cache_dir"] == CLIP_CACHE == "data/models/open_clip" and seen["pretrained"] == "openai"
