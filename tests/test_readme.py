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
    assert tests.startswith("python3 -m pip install -e ") and tests.endswith("python3 -m pytest --slow")


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = quick_start_commands()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert tests in ci
