"""The describe job's own environment (describe.python): vLLM never runs in the training
environment, the stage's command runs itself again in the describe environment, what is missing
is said in one line, and the environment's build marks itself complete only at its end. The real
environment and engine: tests/test_describe_vllm_cpu.py (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages.config import DESCRIBE_PYTHON, load_schema
from stages.describe import environment
from stages.describe.checks import effective
from stages.describe.vllm_check import check_job
from stages.describe.vllm_support import vllm_distribution

REPO = Path(__file__).resolve().parents[1]


def vllm_job(**describe) -> dict:
    """A validated one-type vLLM job, as the rule passes it."""
    job = check_job("data/models/smollm2-135m-instruct", min_pool=1)
    job["describe"].update(describe)
    return job


def run_cli(*args, cwd, env=None) -> subprocess.CompletedProcess:
    """`python -m stages.describe ...` in its own process (a hop replaces the process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "stages.describe", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_training_environment_has_no_vllm():
    # vLLM pins its own torch: installed here, it would have replaced the training environment's
    assert vllm_distribution() is None, "vLLM is installed in the training environment: it belongs in .venv-describe"


def test_vllm_runs_in_the_describe_environment_and_the_others_where_they_are():
    schema = load_schema()["$defs"]["describe"]["properties"]["python"]
    assert schema["default"] is None and ".venv-describe/bin/python" in schema["description"]
    assert effective({"backend": "vllm", "python": None})["python"] == DESCRIBE_PYTHON
    assert effective({"backend": "vllm", "python": "/opt/vllm/bin/python"})["python"] == "/opt/vllm/bin/python"
    assert effective({"backend": "transformers", "python": None})["python"] is None
    assert effective({"backend": "file", "python": None})["python"] is None


def test_generate_runs_itself_again_under_describe_python(tmp_path):
    # a stand-in interpreter that records how it was started: its arguments, then two variables
    fake = tmp_path / "env" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    seen = tmp_path / "seen.txt"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" "$STARFT_DESCRIBE_PYTHON" "$PYTHONPATH" > {seen}\n')
    fake.chmod(0o755)
    job = json.dumps(vllm_job(python=str(fake)))
    args = ["generate", "--dataset", "check", "--dataset-config", job, "--type", "background", "--out-dir", "pools"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    *argv, active, path = seen.read_text().splitlines()
    # the same command there, with the job as validated here (the describe environment has no
    # torchvision, which validating a config file needs)
    assert argv[:-1] == ["-m", "stages.describe", *args, "--dataset-config"] and json.loads(argv[-1]) == json.loads(job)
    assert active == str(fake)                        # which stops it from hopping again
    assert path.split(os.pathsep)[0] == str(REPO)     # and it runs this package
    assert not (tmp_path / "pools").exists()                  # this process did nothing itself


def test_a_missing_describe_environment_is_one_line(tmp_path):
    missing = tmp_path / ".venv-describe" / "bin" / "python"
    proc = run_cli("generate", "--dataset", "check", "--dataset-config", json.dumps(vllm_job(python=str(missing))),
                   "--type", "background", "--out-dir", "pools", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == (f"the describe environment's interpreter {missing} (describe.python) does not exist: "
                           "build it with `python -m stages.describe env cpu` (or gpu), or name an interpreter that "
                           "has vLLM in describe.python\n")
    assert not (tmp_path / "pools").exists()


def test_vllm_missing_in_the_named_environment_is_one_line(tmp_path):
    # the training environment's own interpreter, which has no vLLM, named as the describe environment
    proc = run_cli("generate", "--dataset", "check", "--dataset-config", json.dumps(vllm_job(python=sys.executable)),
                   "--type", "background", "--out-dir", "pools", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == (f"vLLM is not installed in the environment of {sys.executable} (describe.python): build "
                           "the describe environment with `python -m stages.describe env cpu` (or gpu), or name one "
                           "that has vLLM in describe.python\n")
    assert not (tmp_path / "pools").exists()


# --- building the environment ------------------------------------------------------------------

@pytest.fixture
def recipes(tmp_path, monkeypatch):
    """A recipe folder of this test's own, installing nothing from an index (no network)."""
    envs = tmp_path / "envs"
    envs.mkdir()
    monkeypatch.setattr(environment, "ENVS_DIR", envs)
    monkeypatch.setattr(environment, "IMPORTS", ("json",))
    monkeypatch.setitem(environment.FLAVOURS, "cpu", environment.Flavour("describe-cpu.txt"))
    return envs


def test_a_failed_build_says_why_in_one_line_and_is_not_taken_for_complete(recipes, tmp_path):
    (recipes / "describe-cpu.txt").write_text("--no-index\nstarft-describe-missing-package==1.0\n")
    dest = tmp_path / ".venv-describe"
    with pytest.raises(environment.DescribeEnvError) as error:
        environment.build("cpu", dest)
    message = str(error.value)
    assert message.startswith(f"building the describe environment {dest}: pip install -r workflow/envs/describe-cpu.txt "
                              "failed: ERROR: Could not find a version that satisfies the requirement "
                              "starft-describe-missing-package==1.0")
    assert message.endswith(f"(log: {tmp_path / '.venv-describe.log'})") and "\n" not in message
    assert (dest / "bin" / "python").exists() and not (dest / environment.STAMP).exists()
    assert not environment.is_built(dest, environment.stamp("cpu"))


def test_a_complete_build_is_kept_until_its_recipe_changes(recipes, tmp_path):
    (recipes / "describe-cpu.txt").write_text("--no-index\n--requirement empty.txt\n")
    (recipes / "empty.txt").write_text("")
    dest = tmp_path / ".venv-describe"
    first = environment.build("cpu", dest)
    assert first["built_s"] >= 0 and first["flavour"] == "cpu" and (dest / environment.STAMP).exists()
    assert environment.build("cpu", dest)["built_s"] == 0  # already built
    (dest / "marker").write_text("")
    (recipes / "describe-cpu.txt").write_text("--no-index\n--requirement empty.txt\n# changed\n")
    environment.build("cpu", dest)
    assert not (dest / "marker").exists()  # built again from scratch
