"""The benchmark scripts still run against the stages they drive (a moved module broke
bench/step_time.py once without any test noticing): every `stages` import of bench/*.py resolves,
and `bench/gpu_check.sh --smoke` runs each of its steps on the CPU (CI runs it)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = sorted((REPO / "bench").glob("*.py"))


def stage_imports(path: Path):
    """(module, name) of every `from stages... import name` in a script, lazy ones included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stages":
            for alias in node.names:
                yield node.module, alias.name


@pytest.mark.parametrize("script", BENCH, ids=lambda p: p.name)
def test_every_stages_import_of_a_benchmark_resolves(script):
    missing = []
    for module, name in stage_imports(script):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"from {module} import {name}")
    assert not missing, f"{script.name}: {missing}"


TEST_MODULES = {p.stem for p in (REPO / "tests").glob("*.py")}


@pytest.mark.parametrize("script", BENCH, ids=lambda p: p.name)
def test_a_benchmark_stands_on_the_installed_package(script):
    """No sys.path edit and no import from tests/: what a benchmark shares with the tests is in the
    package (stages.toys), so that it runs as `python bench/<script>.py` from an installed package."""
    text = script.read_text()
    assert "sys.path" not in text, f"{script.name} edits sys.path"
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & (TEST_MODULES | {"tests"}), f"{script.name} imports {imported & (TEST_MODULES | {'tests'})}"


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--smoke"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "gpu_check --smoke: all steps ran" in proc.stdout
    step = json.loads((tmp_path / "step_time.json").read_text())
    for variant in ("flyp", "starft"):
        r = step["results"][variant]
        # the count is of the step that ran: FLYP's forward and backward of both towers at least
        assert r["gflop_per_image"] > 0 and r["images_per_s"] > 0, r
    # StarFT adds the teacher's image forward and the spurious captions: more FLOPs than FLYP
    assert step["results"]["starft"]["gflop_per_image"] > step["results"]["flyp"]["gflop_per_image"]
    assert step["results"]["flyp"]["mfu"] is None      # no peak is known for a CPU
