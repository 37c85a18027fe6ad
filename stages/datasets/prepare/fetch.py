"""Resumable, checked HTTP download of one published file.

A transfer goes to `<name>.part` beside its destination and continues from there with an HTTP
Range request after a dropped connection (within the run, and in a later run); the file gets its
final name only once its size and checksum match the config's. A mismatch deletes the part file,
so that the next run starts afresh instead of resuming a corrupt transfer.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ...common.progress import progress

CHUNK = 1 << 20
ATTEMPTS = 5  # connections per file before giving up (each resumes where the last stopped)
TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A file could not be fetched, or what came is not what the config pins: the message names
    the URL and the config key."""


@dataclass(frozen=True)
class Remote:
    """One published file: where it is and what it must be (config `prepare.files.<i>`)."""

    url: str
    key: str                 # the config key, for messages ("datasets.x.prepare.files.0")
    name: str | None = None  # the local file name (default: the URL's last path segment)
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    skip_checksum: bool = False

    @classmethod
    def from_config(cls, entry: dict, key: str) -> Remote:
        """The file of config entry `prepare.files.<i>` (url, name, size, sha256, md5, `checksum: skip`)."""
        return cls(url=entry["url"], key=key, name=entry.get("name"), size=entry.get("size"),
                   sha256=entry.get("sha256"), md5=entry.get("md5"),
                   skip_checksum=entry.get("checksum") == "skip")

    @property
    def filename(self) -> str:
        """The local file name: `name`, else the URL's last path segment; DownloadError when neither is a
        plain file name."""
        name = self.name or Path(urlsplit(self.url).path).name
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise DownloadError(f"{self.key}: cannot name a local file after {self.url!r}; give `name`")
        return name

    def hasher(self):
        """(kind, a fresh hashlib object, expected lowercase hex digest or None when unchecked); sha256
        wins over md5. DownloadError when no checksum is pinned and `checksum: skip` is not given."""
        if self.sha256:
            return "sha256", hashlib.sha256(), self.sha256.lower()
        if self.md5:
            return "md5", hashlib.md5(), self.md5.lower()
        if not self.skip_checksum:
            raise DownloadError(f"{self.key}: no checksum for {self.url}: give sha256 or md5, or "
                                "`checksum: skip` to accept it unchecked")
        return "sha256", hashlib.sha256(), None  # computed and reported, so it can be pinned


def verify(path: Path, remote: Remote) -> str:
    """The file's digest (the configured kind); raises DownloadError on a size or checksum
    mismatch, naming the file, the URL and the config key."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{path}: {size} bytes, but {remote.key}.size says {remote.size} "
                            f"(from {remote.url})")
    kind, h, want = remote.hasher()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return _compare(path, remote, kind, h.hexdigest(), want)


def _compare(path, remote: Remote, kind: str, got: str, want: str | None) -> str:
    # what becomes of the file is the caller's to say: a transfer is deleted, a hand-placed archive kept
    if want is not None and got != want:
        raise DownloadError(f"{remote.url}: {kind} {got} does not match {remote.key}.{kind} {want}")
    return got


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _open(url: str, start: int):
    headers = {"User-Agent": "starft-prepare"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _transfer(remote: Remote, part: Path, h) -> None:
    """Append the rest of the file to `part` (resuming from its size), updating the hash `h`
    with every byte of the file (those already there first)."""
    start = part.stat().st_size if part.exists() else 0
    if remote.size is not None and start > remote.size:
        raise _Restart()  # longer than the file: not a prefix of it
    if start:
        with open(part, "rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
    try:
        response = _open(remote.url, start)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start and start == remote.size:
            return  # the part file is already whole (a run stopped before renaming it)
        raise
    with response:
        if start and response.status != 206:
            raise _Restart()  # the server ignored the Range request
        if start:
            m = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not m or int(m[1]) != start:
                raise _Restart()
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else remote.size
        if remote.size is not None and total is not None and total != remote.size:
            raise DownloadError(f"{remote.url}: the server sends {total} bytes, but {remote.key}.size "
                                f"says {remote.size}")
        with open(part, "ab") as f, progress(desc=remote.filename, total=total, initial=start, unit="B",
                                             unit_scale=True, unit_divisor=1024) as bar:
            while block := response.read(CHUNK):
                f.write(block)
                h.update(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


class _Restart(Exception):
    """The server cannot resume this transfer: start it again from byte 0."""


def fetch(remote: Remote, folder: str | Path) -> tuple[Path, str]:
    """Download `remote` into `folder` (resuming a `.part` left there) and check it; returns
    (path, digest). A file already there under its final name is checked, not fetched again."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / remote.filename
    if dest.exists():
        try:
            return dest, verify(dest, remote)
        except DownloadError:
            dest.unlink()  # a stale or foreign file under that name: fetch it afresh
    part = dest.with_name(dest.name + ".part")
    last = None
    for attempt in range(ATTEMPTS):
        kind, h, want = remote.hasher()
        try:
            _transfer(remote, part, h)
        except _Restart:
            part.unlink(missing_ok=True)
            continue
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code < 500 and e.code != 408:
                raise DownloadError(f"{remote.url}: HTTP {e.code} {e.reason} ({remote.key})") from None
            last = e
            time.sleep(min(2 ** attempt, 30) * (attempt > 0))
            continue
        size = part.stat().st_size
        if remote.size is not None and size != remote.size:
            part.unlink()
            raise DownloadError(f"{remote.url}: got {size} bytes, but {remote.key}.size says {remote.size}; "
                                "the download was deleted")
        try:
            digest = _compare(part, remote, kind, h.hexdigest(), want)
        except DownloadError as e:
            part.unlink()
            raise DownloadError(f"{e}; the download was deleted") from None
        os.replace(part, dest)
        return dest, digest
    raise DownloadError(f"{remote.url}: transfer failed {ATTEMPTS} times ({last!r}); rerun to resume "
                        f"from {part} ({remote.key})")
