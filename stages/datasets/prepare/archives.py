"""Safe extraction of published archives (tar, tar.gz, zip, password-protected zip).

One rule for both formats: a member with an absolute path, a `..` component, a link that points
outside the target, or a device/FIFO is refused with one `UnsafeArchive` error naming the archive
and the member. tar goes through tarfile's `data` filter (which also drops set-uid bits and
refuses the cases above); zip members are checked against the same rule before anything is written.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath


class ArchiveError(ValueError):
    """An archive that cannot be read (corrupt, wrong password): the message names it."""


class UnsafeArchive(ArchiveError):
    """An archive member would be written outside the target folder, or is not a plain file,
    folder or inner link."""


def _refuse(archive, member: str, why: str) -> UnsafeArchive:
    return UnsafeArchive(f"{archive}: member {member!r} {why}; refusing to extract this archive")


def _check_name(archive, name: str) -> None:
    if name.startswith(("/", "\\")) or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise _refuse(archive, name, "has an absolute path")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise _refuse(archive, name, "climbs out with '..'")


def _link_escapes(name: str, target: str) -> bool:
    """Whether a link at `name` (relative to the extraction folder) pointing to `target` leaves it."""
    if target.startswith(("/", "\\")) or PureWindowsPath(target).drive:
        return True
    depth = 0
    for part in (*PurePosixPath(name).parent.parts, *PurePosixPath(target.replace("\\", "/")).parts):
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return True
    return False


def extract_tar(archive: str | Path, target: str | Path) -> None:
    """Extract a tar archive (any compression tarfile reads) into `target` through tarfile's `data`
    filter and the rule above; UnsafeArchive or ArchiveError naming the archive (and member)."""
    archive, target = Path(archive), Path(target)

    def data_only(member: tarfile.TarInfo, path: str):
        _check_name(archive, member.name)
        if member.isdev() or member.isfifo():
            raise _refuse(archive, member.name, "is a device or FIFO")
        if member.issym() and _link_escapes(member.name, member.linkname):
            raise _refuse(archive, member.name, f"is a link to {member.linkname!r}, outside the target")
        if member.islnk():
            try:
                _check_name(archive, member.linkname)
            except UnsafeArchive:
                raise _refuse(archive, member.name, f"is a hard link to {member.linkname!r}, "
                              "outside the target") from None
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as e:
            raise _refuse(archive, member.name, f"is refused by tarfile's data filter ({e})") from None

    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter=data_only)
    except tarfile.TarError as e:
        raise ArchiveError(f"{archive}: not a readable tar archive ({e})") from e


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return info.external_attr >> 16 if info.create_system == 3 else 0  # unix attributes only


def check_zip(archive: str | Path, zf: zipfile.ZipFile) -> None:
    """Refuse a zip whose members break the rule (before anything is written)."""
    for info in zf.infolist():
        _check_name(archive, info.filename)
        mode = _zip_mode(info)
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise _refuse(archive, info.filename, "is a device, FIFO or socket")
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "replace")
            if _link_escapes(info.filename, target):
                raise _refuse(archive, info.filename, f"is a link to {target!r}, outside the target")


def unzip_program() -> str | None:
    """Info-ZIP's unzip, when installed: Python's zipfile decrypts ZipCrypto at ~1 MB/s (pure
    Python), which would take days for ObjectNet's 180 GB; unzip does it at disk speed."""
    return shutil.which("unzip")


def _unzip(archive: Path, target: Path, password: str) -> None:
    # -n: never overwrite; the members were checked by check_zip first
    proc = subprocess.run([unzip_program(), "-q", "-n", "-P", password, str(archive), "-d", str(target)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    said = (proc.stderr + proc.stdout).strip()
    # exit code 1 ("warnings") is also how unzip reports members it skipped: never a partial tree
    if proc.returncode != 0:
        raise ArchiveError(f"{archive}: unzip failed with exit code {proc.returncode} "
                           f"({(said.splitlines() or ['no output'])[-1]})")


def extract_zip(archive: str | Path, target: str | Path, password: str | None = None) -> None:
    """Extract a zip (ZipCrypto-encrypted members read with `password`, by unzip when installed).
    Inner links are written as the small text files zipfile makes of them; nothing is made
    executable."""
    archive, target = Path(archive), Path(target)
    pwd = password.encode() if password else None
    try:
        with zipfile.ZipFile(archive) as zf:
            check_zip(archive, zf)
            files = [i for i in zf.infolist() if not i.is_dir()]
            if pwd and files:  # a wrong password fails here, on the smallest member, at once
                zf.open(min(files, key=lambda i: i.compress_size), pwd=pwd).read()
            if password and unzip_program():
                _unzip(archive, target, password)
                return
            for info in zf.infolist():
                out = target / info.filename
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info, pwd=pwd) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except RuntimeError as e:  # zipfile: "File ... is encrypted, password required" / "Bad password"
        raise ArchiveError(f"{archive}: {e} (config key prepare.password)") from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise ArchiveError(f"{archive}: not a readable zip archive ({e})") from e


def extract(archive: str | Path, target: str | Path, password: str | None = None) -> Path:
    """Extract a tar (any compression) or zip archive into `target` (created); returns target."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        extract_zip(archive, target, password)
    else:
        extract_tar(archive, target)
    return target
