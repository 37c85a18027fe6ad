"""LLM backends behind one small interface: chat conversations in, answer texts out.

Backends only generate. Prompt building, parsing and filtering live in `prompts`, `parse` and
`pool` and are shared, so the vLLM backend (which cannot be run on the CPU machines this project
is tested on) is a thin wrapper around calls whose inputs and outputs the CPU backend exercises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from ..io import sha256_file

Conversation = list[dict[str, str]]


class Backend(Protocol):
    name: str
    model_id: str  # what the `model` column records

    def chat(self, conversations: list[Conversation], *, n: int, temperature: float, top_p: float,
             max_tokens: int, seed: int, desc: str = "") -> list[list[str]]:
        """For each conversation, `n` sampled answers (temperature 0: greedy, then n must be 1)."""


class TransformersBackend:
    """transformers on CPU or GPU; a GGUF file (the default SmolLM2) is de-quantised on load."""

    name = "transformers"
    batch_size = 32  # step-2 conversations per generate() call

    def __init__(self, model: str, gguf_file: str | None = None, gguf_sha256: str | None = None,
                 device: str = "auto", threads: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads > 0:
            torch.set_num_threads(threads)
        kwargs = {}
        if gguf_file:
            path = Path(model) / gguf_file
            if path.exists() and gguf_sha256 and (got := sha256_file(path)) != gguf_sha256:
                raise ValueError(f"{path}: sha256 {got} differs from describe.gguf_sha256 {gguf_sha256}; "
                                 "delete it and fetch it again (rule fetch_smollm2)")
            kwargs["gguf_file"] = gguf_file
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.model_id = f"{model}/{gguf_file}" if gguf_file else model
        self.tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
        # Left padding: every row of a batch then ends where generation starts.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # float32 on CPU: bf16 kernels differ between CPUs, and the default must be reproducible.
        dtype = torch.float32 if self.device == "cpu" else "auto"
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, **kwargs).to(self.device).eval()
        self._torch = torch

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, seed, desc=""):
        torch = self._torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Progress(StoppingCriteria):
            # Called once per generated token: a progress bar that never stops generation.
            def __init__(self, bar):
                self.bar = bar

            def __call__(self, input_ids, scores, **kwargs):
                self.bar.update(1)
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        answers: list[list[str]] = []
        batches = [conversations[i:i + self.batch_size] for i in range(0, len(conversations), self.batch_size)]
        for b, batch in enumerate(batches):
            texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            # Seeded per batch: the answers depend on the seed and the inputs only.
            torch.manual_seed(seed + b)
            label = f"{desc} [{b + 1}/{len(batches)}]" if len(batches) > 1 else desc
            with tqdm(total=max_tokens, desc=label, unit="tok", leave=False) as bar, torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=max_tokens, num_return_sequences=n,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          stopping_criteria=StoppingCriteriaList([_Progress(bar)]), **sampling)
            new = out[:, enc["input_ids"].shape[1]:]
            texts_out = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            answers += [texts_out[i * n:(i + 1) * n] for i in range(len(batch))]
        return answers


class VLLMBackend:
    """vLLM on one or more GPUs (`tensor_parallel_size`); `model` is an HF id or a local folder
    holding config.json, tokenizer and weights. Unverified on the machines this project is built
    on (no GPU); its test runs where vllm and CUDA are importable."""

    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, seed: int = 0):
        from vllm import LLM

        self.model_id = model
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size, seed=seed)

    def chat(self, conversations, *, n, temperature, top_p, max_tokens, seed, desc=""):
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                seed=seed, max_tokens=max_tokens)
        results = self.llm.chat(conversations, params, use_tqdm=True)
        return [[o.text for o in r.outputs] for r in results]


def make_backend(params: dict, seed: int, threads: int = 0) -> Backend:
    """The generating backend named by a validated `describe` config section."""
    if params["backend"] == "transformers":
        return TransformersBackend(params["model"], params.get("gguf_file"), params.get("gguf_sha256"),
                                   device=params.get("device", "auto"), threads=threads)
    if params["backend"] == "vllm":
        return VLLMBackend(params["model"], params.get("tensor_parallel_size", 1), seed=seed)
    raise ValueError(f"describe.backend {params['backend']!r} does not generate (the file backend reads files)")
