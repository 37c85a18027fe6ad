"""The describe stage end to end: the file backend through the CLI (fast), several pools from one
backend load, and a real SmolLM2 generation on CPU (slow; CI runs it). The vLLM backend's GPU test
is tests/test_vllm_gpu.py."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from stages.describe.cli import main
from stages.describe.job import build_pool
from stages.describe.output import COLUMNS, read_metadata, write_outputs
from stages.describe.prompts import load_prompt, prompt_sha256

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["landbird", "waterbird"]


def write_config(tmp_path, describe):
    cfg = {"datasets": {"d": {"reader": "waterbirds", "root": str(tmp_path / "d"), "classnames": CLASSES}},
           "experiments": {"toy": {"seed": 7, "domain": "birds", "train": "d", "model": {"name": "x"},
                                   "describe": describe}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_file_backend_writes_the_filtered_list(tmp_path):
    templates = tmp_path / "bg.yaml"
    templates.write_text(yaml.safe_dump(["{} in the forest.", "a photo of a {} on a beach.", "{} in the forest!",
                                         "a photo of a {} near a landbird."]))
    cfg = write_config(tmp_path, {"backend": "file", "files": {"background": str(templates)}, "min_pool": 2,
                                  "types": ["background"]})
    out = tmp_path / "pools" / "background.descriptions.parquet"
    main(["generate", "--config", str(cfg), "--dataset", "toy", "--type", "background", "--out", str(out)])
    table = pq.read_table(out)
    assert table.column_names == COLUMNS
    assert table.column("template").to_pylist() == ["a photo of a {} in the forest.", "a photo of a {} on a beach."]
    assert set(table.column("backend").to_pylist()) == {"file"} and set(table.column("seed").to_pylist()) == {7}
    meta = read_metadata(out)
    assert meta["rejection_counts"] == {"duplicate": 1, "names_class": 1}
    assert "2 templates kept, 2 lines rejected" in (out.parent / "background.preview.md").read_text()


def test_cli_fails_on_a_too_small_pool_without_writing(tmp_path):
    templates = tmp_path / "bg.txt"
    templates.write_text("{} in the forest.\n1. Here are more:\n")
    cfg = write_config(tmp_path, {"backend": "file", "files": {"background": str(templates)}, "min_pool": 5,
                                  "types": ["background"]})
    out = tmp_path / "pools" / "background.descriptions.parquet"
    with pytest.raises(SystemExit) as err:
        main(["generate", "--config", str(cfg), "--dataset", "toy", "--type", "background", "--out", str(out)])
    assert "has 1 templates, fewer than describe.min_pool=5" in str(err.value)
    assert "[bad_template] '1. Here are more:'" in str(err.value)
    assert not out.exists()


class ScriptedBackend:
    """Answers step 1 with a fixed list and step 2 with a template of the instance: the CLI's
    plumbing (one load, several pools) without a model."""

    name = "scripted"
    model_id = "scripted-model"
    engine = {"scripted": True}

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, seed, desc=""):
        if temperature > 0:  # the quality list is short: one line
            lines = "under heavy rain" if desc.startswith("quality") else "on a sandy beach\nnear a frozen lake\nunder heavy rain"
            return [[lines] * n]
        return [[f"a photo of a {{}} {c[-1]['content']}."] for c in conversations]


@pytest.fixture
def backend_loads(monkeypatch):
    loads = []

    def make_backend(params, seed, threads=0):
        loads.append((params["backend"], seed))
        return ScriptedBackend()

    monkeypatch.setattr("stages.describe.backends.make_backend", make_backend)
    return loads


TYPES = ["background", "texture", "quality"]


def test_cli_writes_every_type_from_one_backend_load(tmp_path, backend_loads):
    cfg = write_config(tmp_path, {"backend": "transformers", "n_samples": 2, "min_pool": 1, "types": TYPES})
    out = tmp_path / "pools"
    main(["generate", "--config", str(cfg), "--dataset", "toy", "--types", *TYPES, "--out-dir", str(out)])
    assert backend_loads == [("transformers", 7)], "the model is loaded once for all types"
    for t in TYPES:
        table = pq.read_table(out / f"{t}.descriptions.parquet")
        assert set(table.column("spurious_type").to_pylist()) == {t} and table.num_rows >= 1
        assert read_metadata(out / f"{t}.descriptions.parquet")["engine"] == {"scripted": True}
        assert (out / f"{t}.preview.md").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{t}.descriptions.parquet" for t in TYPES] + [f"{t}.preview.md" for t in TYPES])


def test_cli_writes_no_pool_when_one_type_is_too_small(tmp_path, backend_loads):
    cfg = write_config(tmp_path, {"backend": "transformers", "n_samples": 2, "min_pool": 2, "types": TYPES})
    out = tmp_path / "pools"
    with pytest.raises(SystemExit) as err:
        main(["generate", "--config", str(cfg), "--dataset", "toy", "--types", *TYPES, "--out-dir", str(out)])
    assert "the 'quality' pool has 1 templates, fewer than describe.min_pool=2" in str(err.value)
    assert "'background' pool" not in str(err.value)
    assert not out.exists() or not any(out.iterdir()), "no partial set of pools"


def test_cli_refuses_a_describe_config_the_engine_would_refuse(tmp_path, backend_loads):
    cfg = write_config(tmp_path, {"backend": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct", "temperature": 0})
    with pytest.raises(SystemExit) as err:
        main(["generate", "--config", str(cfg), "--dataset", "toy", "--type", "background"])
    assert "config key experiments.toy.describe.n_samples: temperature 0 is greedy decoding" in str(err.value)
    assert backend_loads == [], "refused before any model is loaded"


@pytest.fixture(scope="module")
def smollm2_dir():
    from stages.describe.fetch import default_cache_dir, fetch_smollm2

    return fetch_smollm2(default_cache_dir()).parent


@pytest.mark.slow
def test_smollm2_generation_on_cpu_has_schema_provenance_and_is_deterministic(smollm2_dir, tmp_path):
    from stages.describe.backends import TransformersBackend
    from stages.describe.fetch import GGUF_NAME, GGUF_SHA256

    describe = {"backend": "transformers", "model": str(smollm2_dir), "gguf_file": GGUF_NAME,
                "gguf_sha256": GGUF_SHA256, "device": "cpu", "n_samples": 3, "max_tokens": 64, "min_pool": 3}
    cfg = write_config(tmp_path, describe)
    # run 1: the CLI in its own process, as the Snakemake rule runs it
    out1 = tmp_path / "cli" / "quality.descriptions.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    subprocess.run([sys.executable, "-m", "stages.describe", "generate", "--config", str(cfg), "--dataset", "toy",
                    "--type", "quality", "--out", str(out1)], check=True, cwd=tmp_path, env=env)
    # run 2: the same job in this process
    job = {"seed": 7, "domain": "birds", "classnames": CLASSES, "synthetic": False,
           "describe": read_metadata(out1)["params"]}
    backend = TransformersBackend(str(smollm2_dir), GGUF_NAME, GGUF_SHA256, device="cpu")
    pool = build_pool(job, "quality", backend=backend)
    out2 = tmp_path / "api" / "quality.descriptions.parquet"
    write_outputs(pool, out2, out2.with_name("quality.preview.md"), dataset="toy", job=job)
    assert out1.read_bytes() == out2.read_bytes(), "same seed, same backend on CPU: the files must be identical"

    table = pq.read_table(out1)
    rows = table.to_pylist()
    assert table.column_names == COLUMNS and len(rows) >= 3
    spec = load_prompt("quality")
    for row in rows:
        assert row["spurious_type"] == "quality" and row["backend"] == "transformers"
        assert row["model"] == f"{smollm2_dir}/{GGUF_NAME}" and row["seed"] == 7
        assert row["prompt_sha256"] == prompt_sha256(spec, "birds")
        assert 0 <= row["sample_index"] < 3 and row["raw_line"].strip()
        assert row["template"].count("{}") == 1 and row["template"].endswith(".") and row["phrase"]
        assert "landbird" not in row["template"] and "waterbird" not in row["template"]
    meta = read_metadata(out1)
    assert meta["params"]["gguf_sha256"] == GGUF_SHA256 and meta["params"]["temperature"] == 0.8
    assert {"torch", "transformers", "gguf", "pyarrow"} <= set(meta["versions"])
    assert meta["prompt"]["instances"][-1]["content"].count("birds") == 1
    assert sum(meta["rejection_counts"].values()) == len(meta["rejected"])
    # provenance without a timestamp (the byte equality above would not survive one)
    assert set(meta) == {"dataset", "spurious_type", "domain", "classnames", "backend", "model", "seed", "params",
                         "prompt_sha256", "prompt", "engine", "sampling", "versions", "n_templates",
                         "rejection_counts", "rejected"}
    assert meta["engine"]["device"] == "cpu" and meta["engine"]["dtype"] == "torch.float32"
    assert meta["sampling"]["instances"]["repetition_penalty"] == 1.0 and meta["sampling"]["templates"]["n"] == 1
