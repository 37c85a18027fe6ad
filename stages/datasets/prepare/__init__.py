"""`prepare`: a published data set fetched, checked and laid out exactly as its reader reads it.

    python -m stages.datasets.prepare --dataset flowers102 --reader flowers102 --root data/flowers102 \\
        --spec '{"files": [...]}' --downloads data/downloads/flowers102 --out data/flowers102/prepared

Opt-in (the rule `prepare_data`, README "The paper's tables"); nothing else downloads. The
source is the config's `prepare` entry of the data set:
    files     HTTP downloads (fetch.py: resumable, size and checksum checked), laid out by the
              reader's builder (layouts.py);
    hub       a mirror on the HF hub at a pinned revision, converted (hub.py: CelebA, Stanford Cars);
    archives  files the user fetched by hand (imagenet.py: ILSVRC-2012's three official archives).
Archives are extracted by archives.py (nothing outside the target, no links out, no devices).
The tree is built in a scratch folder beside the root, must pass the data check
(stages.datasets.datacheck) there, and only then is renamed to the root: an interrupted or
corrupt download never leaves a root that the data check would accept. A root already in place
and passing the check is not fetched again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..base import DatasetConfigError, DatasetLayoutError
from ..datacheck import check
from . import hub, layouts
from .archives import ArchiveError
from .fetch import DownloadError, Remote, fetch
from .imagenet import build_imagenet

__all__ = ["PrepareError", "kind_of", "prepare"]


class PrepareError(RuntimeError):
    """A data set could not be prepared; the message is one line naming what to do."""


def kind_of(reader: str, spec: dict | None) -> str:
    """How a data set is prepared: 'archives' (hand-fetched), 'hub', 'files' or 'manual'."""
    spec = spec or {}
    if reader == "imagenet":
        return "archives"
    if spec.get("hub"):
        return "hub"
    if spec.get("files"):
        return "files"
    return "manual"


def _work_folder(root: Path) -> Path:
    work = root.parent / f".{root.name}.prepare"
    shutil.rmtree(work, ignore_errors=True)  # what an interrupted run left
    work.mkdir(parents=True)
    return work


def _build(name: str, reader: str, spec: dict, work: Path, downloads: Path,
           splits: list[str] | None = None) -> tuple[Path, dict]:
    key = f"datasets.{name}.prepare"
    kind = kind_of(reader, spec)
    if kind == "archives":
        archives = Path(spec.get("archives") or downloads)
        try:
            return build_imagenet(archives, work, key, splits), {"archives": str(archives)}
        except FileNotFoundError as e:
            raise PrepareError(f"{name}: {e}") from None
    if kind == "hub":
        if reader not in hub.BUILDERS:
            raise PrepareError(f"{key}.hub: no converter from a hub mirror to reader {reader!r}'s layout")
        return hub.BUILDERS[reader](hub.snapshot(spec, key), work), {"hub": spec["hub"]}
    if reader not in layouts.BUILDERS:
        raise PrepareError(f"{key}.files: no builder of reader {reader!r}'s layout from published files")
    files, fetched = {}, []
    for i, entry in enumerate(spec["files"]):
        remote = Remote.from_config(entry, f"{key}.files.{i}")
        path, digest = fetch(remote, downloads)
        files[remote.filename] = path
        fetched.append({"url": remote.url, "name": remote.filename, "size": path.stat().st_size,
                        ("md5" if remote.md5 else "sha256"): digest, "checked": not remote.skip_checksum})
        if remote.skip_checksum:
            print(f"{remote.filename}: unchecked ({remote.key}: checksum skip); its sha256 is {digest}")
    return layouts.BUILDERS[reader](files, work, spec), {"files": fetched, "paths": [str(p) for p in files.values()]}


def prepare(name: str, reader: str, root: str | Path, spec: dict | None, downloads: str | Path,
            keep_downloads: bool = False, **check_options) -> dict:
    """Prepare data set `name` at `root` (see the module's doc); returns the record of what was
    done: {"dataset", "reader", "root", "status": "prepared"|"in place", source, "splits"}."""
    root, downloads = Path(root), Path(downloads)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()  # e.g. made by Snakemake for the record inside it
    if root.exists():
        try:
            record = check(name, reader, root, **check_options)
        except (DatasetLayoutError, DatasetConfigError) as e:
            raise PrepareError(f"{root} exists but fails its data check ({' '.join(str(e).split())}); "
                               "move it away to prepare it afresh") from None
        return {"dataset": name, "reader": reader, "root": str(root), "status": "in place",
                "splits": record["splits"]}
    if kind_of(reader, spec) == "manual":
        try:
            check(name, reader, root, **check_options)
        except DatasetLayoutError as e:
            raise PrepareError(f"{name}: nothing to fetch it from in the config; {e}") from None
    work = _work_folder(root)
    try:
        # the checked splits: those the data check opens below, so that their files are looked for first
        tree, source = _build(name, reader, spec or {}, work, downloads, check_options.get("splits"))
        try:
            record = check(name, reader, tree, **check_options)
        except (DatasetLayoutError, DatasetConfigError) as e:
            raise PrepareError(f"{name}: the prepared tree fails its data check, left unused: "
                               f"{' '.join(str(e).split())}") from None
        os.replace(tree, root)
    except (DownloadError, ArchiveError, layouts.PublishedLayoutError, OSError) as e:
        raise PrepareError(f"{name}: {' '.join(str(e).split())}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not keep_downloads:
        for path in source.pop("paths", []):
            Path(path).unlink(missing_ok=True)
    source.pop("paths", None)
    return {"dataset": name, "reader": reader, "root": str(root), "status": "prepared", **source,
            "splits": record["splits"]}
