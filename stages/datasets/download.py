"""Opt-in download of a data set tarball (the canonical Waterbirds archive), checked and extracted."""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import urllib.request
from pathlib import Path

from ..common.io import atomic_path
from ..common.progress import progress


def download(url: str, dest: str | Path, sha256: str | None = None) -> Path:
    dest = Path(dest)
    archive = dest / Path(url).name
    with atomic_path(archive) as tmp, urllib.request.urlopen(url) as r, open(tmp, "wb") as f:
        h = hashlib.sha256()
        with progress(desc=Path(url).name, total=int(r.headers.get("Content-Length", 0)) or None, unit="B",
                      unit_scale=True) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
        if sha256 and h.hexdigest() != sha256:
            raise ValueError(f"{url}: sha256 {h.hexdigest()} does not match the config's {sha256}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Download and extract a data set tarball.")
    p.add_argument("--url", required=True)
    p.add_argument("--sha256", default="")
    p.add_argument("--dest", required=True)
    a = p.parse_args(argv)
    try:
        download(a.url, a.dest, a.sha256 or None)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
