"""One description of how to sample, turned into each backend's own arguments.

vLLM and transformers fill unset sampling arguments differently: `transformers.generate` merges
the model's `generation_config.json` (Qwen2.5: repetition_penalty 1.05, top_k 20, top_p 0.8)
under whatever it is given, while vLLM uses that file only when no `SamplingParams` is passed at
all. A value left unset can therefore differ between the backends. `SamplingSpec` sets every
parameter that changes which token is picked, and the two converters below are the only places
that translate it, so both engines get the same values (tests/test_describe_backends.py).
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SamplingSpec:
    """Every sampling parameter of one request; checked on creation (ValueError), as vLLM checks them."""
    n: int                      # answers per conversation
    temperature: float          # 0: greedy (then n must be 1)
    top_p: float                # in (0, 1]; 1 = off
    max_tokens: int             # new tokens per answer
    seed: int
    top_k: int | None = None    # None = off
    min_p: float = 0.0          # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    presence_penalty: float = 0.0    # vLLM only; transformers has none, so it stays off
    frequency_penalty: float = 0.0   # vLLM only, as above

    def __post_init__(self):
        # vLLM's own checks, applied to both backends alike (the config check stops the describe
        # values earlier, before any model is loaded; these guard direct callers)
        ints = {"n": self.n, "max_tokens": self.max_tokens, "seed": self.seed}
        if bad := {k: v for k, v in ints.items() if type(v) is not int}:  # vLLM refuses a float n
            raise ValueError(f"n, max_tokens and seed must be integers, got {bad}")
        if self.n < 1 or self.max_tokens < 1:
            raise ValueError(f"n and max_tokens must be >= 1, got n={self.n}, max_tokens={self.max_tokens}")
        if not 0 <= self.temperature <= 2:  # vLLM 0.34 refuses above 2 (0.6.3 did not)
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.greedy and self.n != 1:
            raise ValueError(f"temperature 0 is greedy decoding, which has one answer; got n={self.n}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be None (off) or >= 1, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        """Whether this is greedy decoding (temperature 0)."""
        return self.temperature == 0

    @classmethod
    def make(cls, *, n: int, temperature: float, top_p: float, max_tokens: int, seed: int) -> "SamplingSpec":
        """The spec of a describe request: greedy requests carry neutral values for the sampling
        filters, which neither engine uses then (and which keep the record readable)."""
        if temperature == 0:
            top_p = 1.0
        return cls(n=_integer(n), temperature=float(temperature), top_p=float(top_p), max_tokens=_integer(max_tokens),
                   seed=_integer(seed))

    def as_dict(self) -> dict:
        """Every parameter as a plain dict (the pool's `sampling` record)."""
        return asdict(self)


def _integer(value):
    """A Python int from an int-like value (numpy integers too); a float stays as it is, and the
    spec refuses it, as vLLM would."""
    try:
        return operator.index(value)
    except TypeError:
        return value


def to_vllm_kwargs(spec: SamplingSpec) -> dict:
    """Keyword arguments of `vllm.SamplingParams`. top_k -1 means off in every vLLM release
    since 0.6 (newer ones also accept 0; 0.6.x rejects it)."""
    return dict(n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
                top_k=-1 if spec.top_k is None else spec.top_k, min_p=spec.min_p,
                repetition_penalty=spec.repetition_penalty, presence_penalty=spec.presence_penalty,
                frequency_penalty=spec.frequency_penalty, seed=spec.seed, max_tokens=spec.max_tokens, min_tokens=0)


def to_generate_kwargs(spec: SamplingSpec) -> dict:
    """Keyword arguments of `transformers` `generate()`. Each is given explicitly, so that none
    comes from the model's generation_config.json (an explicit None also overrides it: None is
    transformers' "off" for top_k and min_p). The seed is not an argument of generate(): the
    backend seeds torch before each batch."""
    if spec.presence_penalty or spec.frequency_penalty:
        raise ValueError("transformers has no presence/frequency penalty; keep them 0")
    # transformers-only knobs a generation_config.json may set, off as vLLM has them
    common = dict(max_new_tokens=spec.max_tokens, num_return_sequences=spec.n,
                  repetition_penalty=spec.repetition_penalty, no_repeat_ngram_size=0, min_new_tokens=0)
    if spec.greedy:
        # greedy search applies no sampling filter; None keeps the model's values out and quiet
        return dict(common, do_sample=False, temperature=None, top_p=None, top_k=None, min_p=None,
                    typical_p=None, epsilon_cutoff=None, eta_cutoff=None)
    return dict(common, do_sample=True, temperature=spec.temperature, top_p=spec.top_p,
                top_k=spec.top_k, min_p=spec.min_p or None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)
