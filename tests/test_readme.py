"""The README's two commands are what a fresh machine runs, and CI runs the second as written."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Quick start"):]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_quick_start_is_two_complete_commands():
    demo, tests = quick_start_commands()
    # each sets up first, then runs: nothing else needs doing on a fresh machine
    assert demo.startswith("python3 -m pip install -e ") and demo.endswith("snakemake --cores 2 results/synthbirds")
    # the tests' set-up is both environments: the training one, then the describe one, where the
    # slow tests run vLLM's CPU engine (and fail in CI without it)
    install, *setup, run = tests.split(" && ")
    assert install.startswith("python3 -m pip install -e ") and run == "python3 -m pytest --slow"
    assert setup == ["python3 -m stages.describe env cpu"]


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = quick_start_commands()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert tests in ci
