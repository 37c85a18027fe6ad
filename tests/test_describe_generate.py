"""The describe stage end to end: the file backend through the CLI (fast), a real SmolLM2
generation on CPU (slow; CI runs it) and the vLLM backend (only where vllm and CUDA exist)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from stages.describe.cli import build_pool, main
from stages.describe.output import COLUMNS, read_metadata, write_outputs
from stages.describe.prompts import load_prompt, prompt_sha256

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["landbird", "waterbird"]


def write_config(tmp_path, describe):
    cfg = {"toy": {"seed": 7, "domain": "birds", "classnames": CLASSES, "data": {"root": str(tmp_path / "d")},
                   "model": {"name": "x"}, "describe": describe}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_file_backend_writes_the_filtered_list(tmp_path):
    templates = tmp_path / "bg.yaml"
    templates.write_text(yaml.safe_dump(["{} in the forest.", "a photo of a {} on a beach.", "{} in the forest!",
                                         "a photo of a {} near a landbird."]))
    cfg = write_config(tmp_path, {"backend": "file", "files": {"background": str(templates)}, "min_pool": 2})
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
    cfg = write_config(tmp_path, {"backend": "file", "files": {"background": str(templates)}, "min_pool": 5})
    out = tmp_path / "pools" / "background.descriptions.parquet"
    with pytest.raises(SystemExit) as err:
        main(["generate", "--config", str(cfg), "--dataset", "toy", "--type", "background", "--out", str(out)])
    assert "has 1 templates, fewer than describe.min_pool=5" in str(err.value)
    assert "[bad_template] '1. Here are more:'" in str(err.value)
    assert not out.exists()


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
                         "prompt_sha256", "prompt", "versions", "n_templates", "rejection_counts", "rejected"}


def _vllm_and_cuda() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


vllm_ready = pytest.mark.skipif(not _vllm_and_cuda(), reason="needs vllm and a CUDA device")


@pytest.mark.gpu
@vllm_ready
def test_vllm_backend_builds_a_pool(tmp_path):
    from stages.describe.backends import VLLMBackend

    # STARFT_VLLM_MODEL: an HF id or a local folder; the default is small to keep the test quick
    model = os.environ.get("STARFT_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    describe = {"backend": "vllm", "model": model, "n_samples": 4, "max_tokens": 128, "min_pool": 3,
                "temperature": 0.8, "top_p": 0.95, "max_words": 12, "files": {}, "gguf_file": None}
    job = {"seed": 0, "domain": "birds", "classnames": CLASSES, "synthetic": False, "describe": describe}
    backend = VLLMBackend(model, seed=0)
    pool = build_pool(job, "background", backend=backend)
    pool.check_size(3)
    out = tmp_path / "background.descriptions.parquet"
    write_outputs(pool, out, tmp_path / "background.preview.md", dataset="toy", job=job)
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["backend"] == "vllm" and rows[0]["model"] == model
    assert all(r["template"].count("{}") == 1 for r in rows)
    assert "vllm" in read_metadata(out)["versions"]
