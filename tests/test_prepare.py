"""`prepare` without the internet: a real HTTP server on 127.0.0.1 (with Range) serves archives
built here in each publisher's layout from the tiny trees of tests/trees.py; the prepared tree must
then pass its reader and the data check with the same counts as the tree it was packed from."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import trees
from helpers import http_server

from stages.datasets.datacheck import check
from stages.datasets.prepare import PrepareError, prepare
from stages.datasets.prepare.archives import UnsafeArchive, extract
from stages.datasets.prepare.fetch import DownloadError, Remote, fetch

# ---- a local HTTP server with Range, that can drop a transfer half-way ---------------------------

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        body = srv.files.get(self.path)
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if body is None:
            self.send_error(404)
            return
        if srv.no_range:
            rng = None   # a server that ignores Range sends the whole file with 200
        start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1]) if rng else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        data = body[start:]
        if self.path in srv.cut:   # promise the whole file, send half, hang up
            srv.cut.discard(self.path)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    with http_server(Handler, files={}, requests=[], cut=set(), no_range=False) as srv:
        yield srv


def serve(srv, path: str, body: bytes, **entry) -> dict:
    """Publish `body` at `path`; the config entry pinning it (its real sha256 unless given)."""
    srv.files[path] = body
    return {"url": srv.url + path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), **entry}


# ---- archives in the publishers' layouts -------------------------------------------------------

def tar_of(folder: Path, arcname: str, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        tar.add(folder, arcname=arcname)
    return buf.getvalue()


def zip_of(folder: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            name = f"{arcname}/{p.relative_to(folder).as_posix()}"
            zf.write(p, name + "/" if p.is_dir() else name)
    return buf.getvalue()


def counts(record: dict) -> dict:
    """Each split's image count and group counts (the data check's record of it)."""
    return record["splits"]


def source_tree(tmp_path, reader: str, sub: str = "") -> Path:
    """The reader's tiny tree (tests/trees.py), written under tmp/src; returns its config root."""
    return trees.WRITERS[reader](tmp_path / "src" / sub)


def published(srv, tmp_path, reader: str) -> tuple[dict, Path]:
    """(the `prepare` entry, the root of the tree it was packed from) for each HTTP-published set."""
    if reader in ("waterbirds", "imagenet_r", "imagenet_a", "imagenet_v2", "imagenet_sketch", "objectnet"):
        folder, name = {
            "waterbirds": ("waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2.tar.gz"),
            "imagenet_r": ("imagenet-r", "imagenet-r.tar"), "imagenet_a": ("imagenet-a", "imagenet-a.tar"),
            "imagenet_v2": ("imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency.tar.gz"),
            "imagenet_sketch": ("sketch", "ImageNet-Sketch.zip"),
            "objectnet": ("objectnet-1.0", "objectnet-1.0.zip")}[reader]
        src = source_tree(tmp_path, reader, folder)
        if reader == "objectnet":
            if shutil.which("zip") is None:
                pytest.skip("needs the zip program to write a ZipCrypto archive")
            subprocess.run(["zip", "-qr", "-P", "secret", "pub.zip", folder], cwd=src.parent, check=True)
            body = (src.parent / "pub.zip").read_bytes()
            return {"files": [serve(srv, f"/{name}", body)], "password": "secret"}, src
        body = zip_of(src, folder) if name.endswith(".zip") else tar_of(src, folder, "w:gz" if name.endswith("gz") else "w")
        return {"files": [serve(srv, f"/dl/{name}", body)]}, src
    src = source_tree(tmp_path, reader)
    if reader == "caltech101":
        inner = tar_of(src / "caltech101" / "101_ObjectCategories", "101_ObjectCategories")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("caltech-101/101_ObjectCategories.tar.gz", inner)
            zf.writestr("caltech-101/Annotations.tar", b"")
        return {"files": [serve(srv, "/records/files/caltech-101.zip?download=1", buf.getvalue(),
                                name="caltech-101.zip")]}, src
    if reader == "flowers102":
        folder = src / "flowers-102"
        return {"files": [serve(srv, "/102flowers.tgz", tar_of(folder / "jpg", "jpg")),
                          serve(srv, "/imagelabels.mat", (folder / "imagelabels.mat").read_bytes()),
                          {**serve(srv, "/setid.mat", (folder / "setid.mat").read_bytes()), "sha256": None,
                           "md5": hashlib.md5((folder / "setid.mat").read_bytes()).hexdigest()}]}, src
    if reader == "sun397":
        partitions = src / "Partitions"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted(partitions.iterdir()):
                zf.write(p, p.name)   # the listing files at the zip's top level
        # the source keeps its Partitions/ beside SUN397/ (its check); the tar holds SUN397/ only
        return {"files": [serve(srv, "/SUN397.tar.gz", tar_of(src / "SUN397", "SUN397")),
                          serve(srv, "/download/Partitions.zip", buf.getvalue())]}, src
    raise AssertionError(reader)


def root_for(tmp_path, reader: str) -> Path:
    """Where the config would put it: data/<reader>/<the published top folder, where it has one>."""
    sub = {"waterbirds": "waterbird_complete95_forest2water2", "imagenet_r": "imagenet-r",
           "imagenet_a": "imagenet-a", "imagenet_v2": "imagenetv2-matched-frequency-format-val",
           "imagenet_sketch": "sketch", "objectnet": "objectnet-1.0"}.get(reader)
    return tmp_path / "data" / reader / sub if sub else tmp_path / "data" / reader


def clean(spec: dict) -> dict:
    return {**spec, "files": [{k: v for k, v in f.items() if v is not None} for f in spec["files"]]}


HTTP_SETS = ["waterbirds", "imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet",
             "caltech101", "flowers102", "sun397"]


@pytest.mark.parametrize("reader", HTTP_SETS)
def test_each_published_layout_is_prepared_into_what_its_reader_reads(server, tmp_path, reader):
    spec, src = published(server, tmp_path, reader)
    root = root_for(tmp_path, reader)
    record = prepare(reader, reader, root, clean(spec), tmp_path / "data" / "downloads" / reader)
    assert record["status"] == "prepared"
    expected = counts(check(reader, reader, src))
    assert counts(record) == expected and counts(check(reader, reader, root)) == expected
    assert not list((tmp_path / "data" / "downloads" / reader).iterdir())   # archives deleted
    assert sorted(p.name for p in root.parent.iterdir() if p.name.startswith(".")) == []   # no scratch


# ---- checksums, resume, in place ----------------------------------------------------------------

def waterbirds(server, tmp_path, **entry) -> tuple[dict, Path]:
    src = source_tree(tmp_path, "waterbirds", "waterbird_complete95_forest2water2")
    body = tar_of(src, "waterbird_complete95_forest2water2")
    return {"files": [serve(server, "/dro/waterbird_complete95_forest2water2.tar.gz", body, **entry)]}, src


def test_a_wrong_checksum_is_one_error_and_leaves_nothing(server, tmp_path):
    spec, _ = waterbirds(server, tmp_path, sha256="0" * 64)
    data = tmp_path / "data"
    root = data / "waterbirds" / "waterbird_complete95_forest2water2"
    with pytest.raises(PrepareError, match=r"sha256 [0-9a-f]{64} does not match "
                       r"datasets\.waterbirds\.prepare\.files\.0\.sha256 0{64}; the download was deleted"):
        prepare("waterbirds", "waterbirds", root, spec, data / "downloads" / "waterbirds")
    left = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    assert left == ["downloads", "downloads/waterbirds", "waterbirds"]   # empty folders only


def test_a_wrong_size_is_refused_before_the_transfer(server, tmp_path):
    spec, _ = waterbirds(server, tmp_path)
    spec["files"][0]["size"] += 1
    with pytest.raises(PrepareError, match=r"the server sends \d+ bytes, but datasets\.waterbirds\.prepare\.files\.0\.size"):
        prepare("waterbirds", "waterbirds", tmp_path / "data" / "wb" / "w", spec, tmp_path / "dl")


def test_a_transfer_cut_half_way_resumes_with_a_range_request(server, tmp_path):
    spec, src = waterbirds(server, tmp_path)
    path = "/dro/waterbird_complete95_forest2water2.tar.gz"
    server.cut.add(path)
    root = tmp_path / "data" / "waterbirds" / "waterbird_complete95_forest2water2"
    record = prepare("waterbirds", "waterbirds", root, spec, tmp_path / "data" / "downloads")
    size = len(server.files[path])
    assert server.requests == [(path, None), (path, f"bytes={size // 2}-")]
    assert counts(record) == counts(check("waterbirds", "waterbirds", src))


def test_a_part_file_from_an_earlier_run_is_continued_not_restarted(server, tmp_path):
    body = bytes(range(256)) * 40
    entry = serve(server, "/f.bin", body)
    (tmp_path / "f.bin.part").write_bytes(body[:3000])
    path, digest = fetch(Remote.from_config(entry, "k"), tmp_path)
    assert path.read_bytes() == body and digest == entry["sha256"]
    assert server.requests == [("/f.bin", "bytes=3000-")]
    # a corrupt part (right length, wrong bytes) fails the checksum and is deleted, not kept
    (tmp_path / "f.bin").unlink()
    (tmp_path / "f.bin.part").write_bytes(b"x" * 3000)
    with pytest.raises(DownloadError, match="does not match k.sha256"):
        fetch(Remote.from_config(entry, "k"), tmp_path)
    assert not (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin").exists()


def test_a_server_that_ignores_range_gets_the_whole_file_again(server, tmp_path):
    body = bytes(range(256)) * 40
    entry = serve(server, "/f.bin", body)
    (tmp_path / "f.bin.part").write_bytes(body[:3000])
    server.no_range = True
    path, _ = fetch(Remote.from_config(entry, "k"), tmp_path)
    assert path.read_bytes() == body   # not the part + the whole file
    assert [r for _, r in server.requests] == ["bytes=3000-", None]


def test_a_data_set_in_place_is_not_fetched_again(server, tmp_path):
    spec, _ = waterbirds(server, tmp_path)
    root = tmp_path / "data" / "waterbirds" / "waterbird_complete95_forest2water2"
    first = prepare("waterbirds", "waterbirds", root, spec, tmp_path / "dl")
    n = len(server.requests)
    again = prepare("waterbirds", "waterbirds", root, spec, tmp_path / "dl")
    assert (first["status"], again["status"]) == ("prepared", "in place") and len(server.requests) == n
    assert counts(again) == counts(first)


def test_a_root_in_place_that_fails_its_check_is_left_alone(server, tmp_path):
    spec, _ = waterbirds(server, tmp_path)
    root = tmp_path / "data" / "waterbirds" / "w"
    root.mkdir(parents=True)
    (root / "mine.txt").write_text("the user's")
    with pytest.raises(PrepareError, match="exists but fails its data check"):
        prepare("waterbirds", "waterbirds", root, spec, tmp_path / "dl")
    assert (root / "mine.txt").read_text() == "the user's" and server.requests == []


def test_an_unchecked_download_says_so_and_prints_its_sha256(server, tmp_path, capsys):
    spec, _ = waterbirds(server, tmp_path, sha256=None, checksum="skip")
    spec = clean(spec)
    record = prepare("waterbirds", "waterbirds", tmp_path / "data" / "w" / "w", spec, tmp_path / "dl")
    digest = hashlib.sha256(server.files["/dro/waterbird_complete95_forest2water2.tar.gz"]).hexdigest()
    assert record["files"][0]["checked"] is False and record["files"][0]["sha256"] == digest
    assert f"its sha256 is {digest}" in capsys.readouterr().out


def test_a_tree_that_fails_the_data_check_is_never_renamed_into_place(server, tmp_path):
    src = source_tree(tmp_path, "waterbirds", "waterbird_complete95_forest2water2")
    (src / "metadata.csv").write_text("not,the,columns\n1,2,3\n")
    spec = {"files": [serve(server, "/wb.tar.gz", tar_of(src, "waterbird_complete95_forest2water2"),
                            name="waterbird_complete95_forest2water2.tar.gz")]}
    root = tmp_path / "data" / "waterbirds" / "waterbird_complete95_forest2water2"
    with pytest.raises(PrepareError, match="fails its data check, left unused: .*missing column"):
        prepare("waterbirds", "waterbirds", root, spec, tmp_path / "dl")
    assert not root.exists() and list(root.parent.iterdir()) == []


# ---- safe extraction ----------------------------------------------------------------------------

def crafted_tar(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = tarfile.TarInfo("fine/a.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buf.getvalue()


def tar_member(name, kind=tarfile.REGTYPE, linkname=""):
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, linkname
    return m


@pytest.mark.parametrize("member,why", [
    (tar_member("/tmp/evil.txt"), "absolute path"),
    (tar_member("fine/../../evil.txt"), "'..'"),
    (tar_member("link", tarfile.SYMTYPE, "/etc/passwd"), "outside the target"),
    (tar_member("fine/link", tarfile.SYMTYPE, "../../evil.txt"), "outside the target"),
    (tar_member("hard", tarfile.LNKTYPE, "../evil.txt"), "hard link to '../evil.txt', outside"),
    (tar_member("dev", tarfile.CHRTYPE), "device"),
    (tar_member("fifo", tarfile.FIFOTYPE), "device or FIFO"),
])
def test_a_malicious_tar_is_refused(tmp_path, member, why):
    archive = tmp_path / "a.tar"
    archive.write_bytes(crafted_tar(member, b"evil"))
    target = tmp_path / "data" / "x"
    with pytest.raises(UnsafeArchive, match=rf"a\.tar: member '{re.escape(member.name)}' .*{re.escape(why)}"):
        extract(archive, target)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "evil.txt").exists()


def zip_with(name: str, data: bytes = b"evil", mode: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fine/a.txt", b"ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system, info.external_attr = 3, mode << 16
        zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize("body,why", [
    (zip_with("/tmp/evil.txt"), "absolute path"),
    (zip_with("fine/../../evil.txt"), "'..'"),
    (zip_with("C:\\evil.txt"), "absolute path"),
    (zip_with("link", b"/etc/passwd", stat.S_IFLNK | 0o777), "outside the target"),
    (zip_with("fine/link", b"../../evil.txt", stat.S_IFLNK | 0o777), "outside the target"),
    (zip_with("dev", b"", stat.S_IFCHR | 0o600), "device"),
])
def test_a_malicious_zip_is_refused_before_anything_is_written(tmp_path, body, why):
    archive = tmp_path / "a.zip"
    archive.write_bytes(body)
    target = tmp_path / "data" / "x"
    with pytest.raises(UnsafeArchive, match=rf"a\.zip: member .* {re.escape(why)}"):
        extract(archive, target)
    assert list(target.iterdir()) == []   # not even the harmless member


def test_a_link_inside_the_target_is_extracted(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(crafted_tar(tar_member("fine/link", tarfile.SYMTYPE, "a.txt")))
    extract(archive, tmp_path / "x")
    assert (tmp_path / "x" / "fine" / "link").read_text() == "ok"


def test_a_malicious_published_archive_stops_prepare_with_nothing_in_place(server, tmp_path):
    body = crafted_tar(tar_member("waterbird_complete95_forest2water2/../../../evil.txt"), b"evil")
    spec = {"files": [serve(server, "/waterbird_complete95_forest2water2.tar.gz", body)]}
    root = tmp_path / "data" / "waterbirds" / "waterbird_complete95_forest2water2"
    with pytest.raises(PrepareError, match="climbs out with '..'"):
        prepare("waterbirds", "waterbirds", root, spec, tmp_path / "data" / "downloads")
    assert not root.exists() and not list(tmp_path.rglob("evil.txt"))


@pytest.mark.parametrize("unzip", [True, False], ids=["unzip", "zipfile"])
def test_a_password_zip_is_read_by_unzip_or_by_zipfile(server, tmp_path, monkeypatch, unzip):
    from stages.datasets.prepare import archives

    if not unzip:
        monkeypatch.setattr(archives, "unzip_program", lambda: None)
    spec, src = published(server, tmp_path, "objectnet")
    root = tmp_path / "data" / "objectnet" / "objectnet-1.0"
    record = prepare("objectnet", "objectnet", root, spec, tmp_path / "dl")
    assert record["splits"] == check("objectnet", "objectnet", src)["splits"]


@pytest.mark.parametrize("unzip", [True, False], ids=["unzip", "zipfile"])
def test_a_wrong_zip_password_is_one_error(server, tmp_path, monkeypatch, unzip):
    from stages.datasets.prepare import archives

    if not unzip:
        monkeypatch.setattr(archives, "unzip_program", lambda: None)
    spec, _ = published(server, tmp_path, "objectnet")
    spec["password"] = "wrong"
    with pytest.raises(PrepareError, match="(?i)bad password"):
        prepare("objectnet", "objectnet", tmp_path / "data" / "objectnet" / "objectnet-1.0", spec,
                tmp_path / "dl")


def test_a_set_with_nothing_to_fetch_from_gets_one_line_saying_what_to_put_where(tmp_path):
    with pytest.raises(PrepareError, match=r"nothing to fetch it from in the config; .*celeba not found: "
                       r"put CelebA's img_align_celeba/ folder.* there; published at"):
        prepare("celeba", "celeba", tmp_path / "celeba", None, tmp_path / "dl")


# ---- hub mirrors, from a pre-filled huggingface_hub cache (offline) -----------------------------

def hf_parquet(columns: dict, features: dict) -> bytes:
    """A Parquet file as the `datasets` library writes it (features in the schema metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def hub_cache(home: Path, repo: str, revision: str, files: dict[str, bytes]) -> None:
    """huggingface_hub's cache layout under HF_HOME: blobs by sha256, snapshot links, refs/main."""
    base = home / "hub" / ("datasets--" + repo.replace("/", "--"))
    for rel, data in files.items():
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / revision / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(revision)


def celeba_mirror(src: Path) -> dict[str, bytes]:
    """flwrlabs/celeba's shape: <split>-0000k-of-0000n.parquet, an Image column, celeb_id and the
    40 attributes as bools; train in two shards; no file names kept (rows in CelebA's order)."""
    attrs = trees.CELEBA_ATTRIBUTES
    lines = (src / "list_attr_celeba.txt").read_text().splitlines()[2:]
    part = dict(ln.split() for ln in (src / "list_eval_partition.txt").read_text().splitlines())
    rows = {0: [], 1: [], 2: []}
    for ln in lines:
        name, *values = ln.split()
        rows[int(part[name])].append((name, [v == "1" for v in values]))
    features = {"image": {"_type": "Image"}, "celeb_id": {"dtype": "int64", "_type": "Value"},
                **{a: {"dtype": "bool", "_type": "Value"} for a in attrs}}

    def shard(chunk):
        cols = {"image": [{"bytes": (src / "img_align_celeba" / n).read_bytes(), "path": None} for n, _ in chunk],
                "celeb_id": [7] * len(chunk)}
        cols.update({a: [v[i] for _, v in chunk] for i, a in enumerate(attrs)})
        return hf_parquet(cols, features)

    d = "img_align+identity+attr"
    train = rows[0]
    return {f"{d}/train-00000-of-00002.parquet": shard(train[:3]),
            f"{d}/train-00001-of-00002.parquet": shard(train[3:]),
            f"{d}/valid-00000-of-00001.parquet": shard(rows[1]),
            f"{d}/test-00000-of-00001.parquet": shard(rows[2]),
            "README.md": b"card"}


def cars_mirror(src: Path) -> dict[str, bytes]:
    """tanganke/stanford_cars' shape: data/{train,test}-*.parquet with an Image and a ClassLabel."""
    import scipy.io

    base = src / "stanford_cars"
    features = {"image": {"_type": "Image"},
                "label": {"names": list(trees.CARS_NAMES), "_type": "ClassLabel"}}
    out = {}
    for split, mat, folder in (("train", base / "devkit" / "cars_train_annos.mat", "cars_train"),
                               ("test", base / "cars_test_annos_withlabels.mat", "cars_test")):
        annotations = scipy.io.loadmat(mat, squeeze_me=True)["annotations"]
        images = [{"bytes": (base / folder / a["fname"]).read_bytes(), "path": str(a["fname"])} for a in annotations]
        labels = [int(a["class"]) - 1 for a in annotations]
        out[f"data/{split}-00000-of-00001.parquet"] = hf_parquet({"image": images, "label": labels}, features)
    return out


REVISION = "0123456789abcdef0123456789abcdef01234567"
MIRRORS = {"celeba": ("flwrlabs/celeba", celeba_mirror, ["img_align+identity+attr/*.parquet"]),
           "stanford_cars": ("tanganke/stanford_cars", cars_mirror, ["data/train-*.parquet", "data/test-*.parquet"])}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HOME in tmp, HF_HUB_OFFLINE=1 (huggingface_hub reads both at import: its constants too)."""
    from huggingface_hub import constants

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


def same_labels(reader: str, root: Path, src: Path) -> bool:
    from stages import datasets

    for split in ("test", "val"):
        got, want = (datasets.open(reader, r, split).labels_and_attributes() for r in (root, src))
        if not all((g == w).all() for g, w in zip(got, want)):
            return False
    return True


@pytest.mark.parametrize("reader", list(MIRRORS))
def test_a_hub_mirror_is_converted_into_the_readers_layout_offline(tmp_path, offline_hub, reader):
    repo, mirror, patterns = MIRRORS[reader]
    src = source_tree(tmp_path, reader)
    hub_cache(offline_hub, repo, REVISION, mirror(src))
    root = tmp_path / "data" / reader
    spec = {"hub": {"repo": repo, "revision": REVISION, "files": patterns}}
    record = prepare(reader, reader, root, spec, tmp_path / "dl")
    assert record["splits"] == check(reader, reader, src)["splits"] == check(reader, reader, root)["splits"]
    assert same_labels(reader, root, src)
    # a revision not in the cache, offline: one error naming the mirror and the revision
    spec["hub"]["revision"] = "f" * 40
    shutil.rmtree(root)
    with pytest.raises(PrepareError, match=rf"{reader}\.prepare\.hub: {repo}@f{{40}} could not be fetched"):
        prepare(reader, reader, root, spec, tmp_path / "dl")
    assert not root.exists()


@pytest.mark.slow  # a fresh Python importing torch: ~15 s on a loaded 2-core machine
def test_the_prepare_cli_reads_a_hub_mirror_from_the_cache_in_hf_home_offline(tmp_path):
    repo, mirror, patterns = MIRRORS["celeba"]
    src = source_tree(tmp_path, "celeba")
    hub_cache(tmp_path / "hf", repo, REVISION, mirror(src))
    root, out = tmp_path / "data" / "celeba", tmp_path / "data" / "celeba" / "prepared"
    spec = {"hub": {"repo": repo, "revision": REVISION, "files": patterns}}
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "stages.datasets.prepare", "--dataset", "celeba", "--reader",
                           "celeba", "--root", str(root), "--spec", json.dumps(spec), "--downloads",
                           str(tmp_path / "dl"), "--splits", '["test"]', "--out", str(out)],
                          check=False, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["hub"]["revision"] == REVISION and record["splits"] == check("celeba", "celeba", src)["splits"]
    assert same_labels("celeba", root, src)


# ---- ImageNet from its three official archives --------------------------------------------------

def imagenet_archives(folder: Path, classes=trees.IMAGENET_CLASSES, n_val: int = 2, n_train: int = 2) -> dict:
    """ILSVRC2012_devkit_t12.tar.gz (data/meta.mat: 1000 leaf synsets plus one inner node, in
    ILSVRC-id order, which is not the sorted-wnid order; the val ground truth), the flat val tar and
    the train tar of one inner tar per wnid. Returns {val file name: wnid}."""
    import numpy as np
    import scipy.io

    from stages.datasets import imagenet

    wnids = imagenet.wnids()
    ilsvrc = {i: trees.ilsvrc_id(i) + 1 for i in range(1000)}   # sorted index -> ILSVRC id (1 ... 1000)
    dtype = [("ILSVRC2012_ID", object), ("WNID", object), ("words", object), ("gloss", object),
             ("num_children", object)]
    synsets = sorted([(ilsvrc[i], wnids[i], f"name {i}, other {i}", "g", 0) for i in range(1000)])
    synsets.append((1001, "n00001740", "entity", "g", 3))
    dev = folder / "dev" / "ILSVRC2012_devkit_t12" / "data"
    dev.mkdir(parents=True)
    scipy.io.savemat(dev / "meta.mat", {"synsets": np.array(synsets, dtype=dtype)})
    val_dir, truth, labels = folder / "val", [], {}
    val_dir.mkdir()
    for k in range(n_val):
        for c in classes:
            name = f"ILSVRC2012_val_{len(truth) + 1:08d}.JPEG"
            trees.jpeg(val_dir / name, trees.colour(c))
            truth.append(str(ilsvrc[c]))
            labels[name] = wnids[c]
    (dev / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(truth) + "\n")
    (folder / "ILSVRC2012_devkit_t12.tar.gz").write_bytes(tar_of(folder / "dev" / "ILSVRC2012_devkit_t12",
                                                                  "ILSVRC2012_devkit_t12"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(val_dir.iterdir()):
            tar.add(p, arcname=p.name)
    (folder / "ILSVRC2012_img_val.tar").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for c in classes:
            inner = folder / "train" / wnids[c]
            for k in range(n_train):
                trees.jpeg(inner / f"{wnids[c]}_{k}.JPEG", trees.colour(c))
            data = tar_of(inner, ".", "w")
            info = tarfile.TarInfo(f"{wnids[c]}.tar")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "ILSVRC2012_img_train.tar").write_bytes(buf.getvalue())
    for d in ("dev", "val", "train"):
        shutil.rmtree(folder / d)
    return labels


@pytest.fixture
def archive_md5s(monkeypatch):
    """torchvision checks the official archives' md5s; the test's archives get theirs."""
    from torchvision.datasets import imagenet as tv

    def pin(folder: Path):
        meta = {k: (name, hashlib.md5((folder / name).read_bytes()).hexdigest() if (folder / name).exists() else md5)
                for k, (name, md5) in tv.ARCHIVE_META.items()}
        monkeypatch.setattr(tv, "ARCHIVE_META", meta)
    return pin


def test_imagenet_is_prepared_from_its_three_official_archives(tmp_path, archive_md5s):
    from stages import datasets
    from stages.datasets import imagenet

    archives = tmp_path / "data" / "downloads" / "imagenet"
    archives.mkdir(parents=True)
    truth = imagenet_archives(archives)
    archive_md5s(archives)
    root = tmp_path / "data" / "imagenet"
    record = prepare("imagenet", "imagenet", root, {"archives": str(archives)}, archives)
    assert record["status"] == "prepared"
    assert {s: r["n_images"] for s, r in record["splits"].items()} == {"train": 6, "val": 6}
    val = datasets.open("imagenet", root, "val")
    index = {w: i for i, w in enumerate(imagenet.wnids())}
    got = {Path(val.dataset.path(i)).name: int(val.dataset.labels[i]) for i in range(len(val.dataset))}
    assert got == {name: index[w] for name, w in truth.items()}          # sorted by the devkit's labels
    assert all(Path(val.dataset.path(i)).parent.name == truth[Path(val.dataset.path(i)).name]
               for i in range(len(val.dataset)))
    assert sorted(p.name for p in archives.iterdir()) == sorted(  # the user's archives are kept
        ["ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"])
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".")] == []


def test_imagenet_without_its_archives_says_what_to_fetch_by_hand_and_where(tmp_path):
    with pytest.raises(PrepareError, match=r"imagenet: put ILSVRC2012_devkit_t12\.tar\.gz, ILSVRC2012_img_val\.tar "
                       r"in .*/hand \(download them by hand from https://image-net\.org"):
        prepare("imagenet", "imagenet", tmp_path / "data" / "imagenet", {"archives": str(tmp_path / "hand")},
                tmp_path / "dl")


def test_an_imagenet_archive_with_a_wrong_md5_is_refused(tmp_path, archive_md5s):
    archives = tmp_path / "hand"
    archives.mkdir()
    imagenet_archives(archives, n_val=1)
    archive_md5s(archives)
    with open(archives / "ILSVRC2012_img_val.tar", "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(PrepareError, match=r"ILSVRC2012_img_val\.tar: md5 [0-9a-f]{32} does not match "
                       r"datasets\.imagenet\.prepare\.archives\.md5") as e:
        prepare("imagenet", "imagenet", tmp_path / "data" / "imagenet", {"archives": str(archives)}, archives)
    assert not (tmp_path / "data" / "imagenet").exists()
    # a file the user placed by hand is kept, and the message says so (not "the download was deleted")
    assert (archives / "ILSVRC2012_img_val.tar").exists()
    assert "deleted" not in str(e.value)
    assert re.search(r"the file is kept: replace .*ILSVRC2012_img_val\.tar with a complete copy from "
                     r"https://image-net\.org", str(e.value)), str(e.value)


def test_an_imagenet_devkit_with_a_member_outside_its_folder_is_refused(tmp_path, archive_md5s):
    """torchvision's parse_devkit_archive unpacks with tarfile's extractall and no filter: the devkit
    must go through the project's safe extractor instead."""
    archives = tmp_path / "hand"
    archives.mkdir()
    imagenet_archives(archives, n_val=1)
    devkit = archives / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(devkit) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(devkit, "w:gz") as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
        evil = tarfile.TarInfo("../../../evil_devkit.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    archive_md5s(archives)
    with pytest.raises(PrepareError, match=r"ILSVRC2012_devkit_t12\.tar\.gz: member '\.\./\.\./\.\./evil_devkit\.txt' "
                       r"climbs out with '\.\.'"):
        prepare("imagenet", "imagenet", tmp_path / "data" / "imagenet", {"archives": str(archives)}, archives)
    assert not list(tmp_path.rglob("evil_devkit.txt"))
    assert not (tmp_path / "data" / "imagenet").exists()


def test_every_imagenet_archive_a_split_needs_is_checked_before_anything_is_unpacked(tmp_path, archive_md5s):
    archives = tmp_path / "hand"
    archives.mkdir()
    imagenet_archives(archives, n_val=1)
    (archives / "ILSVRC2012_img_train.tar").unlink()
    # an unreadable val archive (with its md5 pinned): unpacking it first would fail on it instead
    (archives / "ILSVRC2012_img_val.tar").write_bytes(b"not a tar")
    archive_md5s(archives)
    with pytest.raises(PrepareError, match=r"^imagenet: put ILSVRC2012_img_train\.tar in .*/hand \(download it by hand "
                       r"from https://image-net\.org.*\); the checked splits \(train, val\) need it$"):
        prepare("imagenet", "imagenet", tmp_path / "data" / "imagenet", {"archives": str(archives)}, archives,
                splits=["val", "train"])
    # only val evaluated: the train archive is not needed, and the unreadable val archive is what fails
    with pytest.raises(PrepareError, match=r"ILSVRC2012_img_val\.tar: not a readable tar archive"):
        prepare("imagenet", "imagenet", tmp_path / "data" / "imagenet", {"archives": str(archives)}, archives,
                splits=["val"])


# ---- the config pins every download; the workflow lists one prepare job per data set --------------

def paper_config() -> dict:
    from stages import config

    return config.merge(config.merge({}, _yaml("config/synthbirds.yaml")), _yaml("config/paper.yaml"))


def _yaml(path: str) -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parent.parent / path).read_text())


@pytest.mark.parametrize("entry,message", [
    ({"sha256": None}, r"datasets\.waterbirds\.prepare\.files\.0\.sha256: None is not of type 'string'"),
    ({}, (r"datasets\.waterbirds\.prepare\.files\.0: no checksum for https://\S+: give the publisher's "
          r"sha256 or md5, or `checksum: skip`")),
    ({"sha256": "a" * 64, "checksum": "skip"}, r"datasets\.waterbirds\.prepare\.files\.0: give one of sha256, md5"),
    ({"checksum": "none"}, r"datasets\.waterbirds\.prepare\.files\.0\.checksum: 'none' is not one of \['skip'\]"),
])
def test_a_download_without_its_checksum_is_refused_naming_the_key(entry, message):
    from stages import config

    cfg = paper_config()
    cfg["datasets"]["waterbirds"]["prepare"]["files"] = [{"url": "https://example.org/w.tar.gz", **entry}]
    with pytest.raises(config.ConfigError, match=message):
        config.validate(cfg)


def test_the_papers_config_pins_every_download_but_those_whose_publisher_publishes_no_checksum():
    from stages import config

    datasets = config.validate(paper_config())["datasets"]
    prepared = {n: d["prepare"] for n, d in datasets.items() if d.get("prepare")}
    assert len(prepared) == 12
    files = [f for p in prepared.values() for f in p.get("files", [])]
    assert {f["url"].rsplit("/", 1)[-1] for f in files if f.get("checksum") == "skip"} == {
        "objectnet-1.0.zip", "waterbird_complete95_forest2water2.tar.gz"}
    assert all(re.fullmatch(r"[0-9a-f]{40}", p["hub"]["revision"]) for p in prepared.values() if "hub" in p)


@pytest.mark.slow  # Snakemake builds the paper's DAG: ~25 s on a loaded 2-core machine
def test_snakemake_lists_a_prepare_job_per_data_set_and_check_data_never_asks_for_one(tmp_path):
    from pipeline import make_workdir, snakemake

    work = make_workdir(tmp_path, {})
    dry = snakemake(work, "-n", "prepare_data_all", "data/imagenet/data_check.json",
                    "data/celeba/data_check.json").stdout
    blocks = re.split(r"\n(?=rule \w+:)", dry)
    prepared = [re.search(r"wildcards: dataset=(\w+)", b)[1] for b in blocks if b.startswith("rule prepare_data:")]
    assert sorted(prepared) == sorted(
        ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet", "waterbirds",
         "celeba", "caltech101", "flowers102", "stanford_cars", "sun397"])
    checks = [b for b in blocks if b.startswith("rule check_data:")]
    assert len(checks) == 2 and not any("input:" in b for b in checks)   # no prepared record asked for


@pytest.mark.slow  # two Snakemake runs, each job a fresh Python: ~40 s
def test_the_prepare_rule_fetches_from_the_config_and_check_data_then_accepts_the_tree(server, tmp_path):
    from pipeline import make_workdir, snakemake

    spec, src = waterbirds(server, tmp_path)
    (tmp_path / "work").mkdir()
    work = make_workdir(tmp_path / "work", {"datasets": {"waterbirds": {"prepare": spec}}})
    snakemake(work, "data/waterbirds/prepared")
    record = json.loads((work / "data" / "waterbirds" / "prepared").read_text())
    assert record["status"] == "prepared" and record["files"][0]["sha256"] == spec["files"][0]["sha256"]
    assert not (work / "data" / "downloads" / "waterbirds" / "waterbird_complete95_forest2water2.tar.gz").exists()
    snakemake(work, "data/waterbirds/data_check.json")
    checked = json.loads((work / "data" / "waterbirds" / "data_check.json").read_text())
    assert checked["splits"] == record["splits"] == check("waterbirds", "waterbirds", src)["splits"]
    assert len(server.requests) == 1
