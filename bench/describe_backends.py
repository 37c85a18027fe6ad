"""The describe stage's two LLM backends side by side, on the same prompts and sampling settings.

    python bench/describe_backends.py                      # SynthBirds' job, 3 types, 8 samples
    python bench/describe_backends.py --types background --n-samples 4

From the repository root, with the describe environment built (`python -m stages.describe env cpu`).

- transformers: SmolLM2-135M-Instruct's Q4_1 GGUF de-quantised on load (float32), in this
  (training) environment, torch on `--threads` threads: the demo's describe job;
- vllm: the same GGUF converted to safetensors (stages.describe.convert) and run by vLLM's CPU
  build in the describe environment (`--python`, built by `python -m stages.describe env cpu`),
  bfloat16 and no torch.compile, OpenMP on `--threads` threads.

Each runs in a process of its own, one after the other, through the pipeline's own code
(`generate_pool`: the two steps, the parser, the filters) on the experiment `synthworld` of
config/synthbirds.yaml (16 species, domain birds), then a greedy probe: the same template
requests (step 2) for the prompt files' worked-example instances, so that the two engines' greedy
answers to identical inputs can be compared. Printed, per backend and side by side (vllm /
transformers): wall time (load, generation), generated tokens and tokens/s (answers re-tokenised
with SmolLM2's tokenizer, the same count for both), step-1 lines, their readable share (not
rejected as empty, junk, too long, not a phrase or an echo of the prompt), templates kept, their
distinct words, and the share of identical greedy answers. Results also go to --out as JSON.

The two will not be token-identical: the samplers draw different random numbers from the same
seed, and vLLM computes in bfloat16 with its own CPU kernels where transformers uses float32.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from stages import config as stage_config
from stages.describe.checks import effective
from stages.describe.fetch import DEFAULT_DEST, GGUF_NAME, GGUF_SHA256, fetch_smollm2
from stages.describe.pool import generate_pool
from stages.describe.prompts import load_prompt, template_messages

REPO = Path(__file__).resolve().parent.parent
VLLM_ARGS = {"dtype": "bfloat16", "max_model_len": 1024, "enforce_eager": True}
# step-1 rejections that say a line was not a readable instance (names_class and duplicate lines were)
UNREADABLE = {"empty", "junk", "too_long", "not_a_phrase", "echoes_prompt"}


def job(types: list[str], n_samples: int, seed: int) -> dict:
    """The demo's describe job (experiment synthworld), with these types, samples and seed."""
    config = stage_config.load(str(REPO / "config/synthbirds.yaml"))
    train = stage_config.train_job(config, "synthworld")
    return {"seed": seed, "domain": train["domain"], "classnames": train["classnames"],
            "describe": {**effective(train["describe"]), "types": types, "n_samples": n_samples}}


class Timed:
    """A backend whose `chat` calls are timed and whose answers' tokens are counted."""

    def __init__(self, backend, tokenizer):
        self.backend, self.tokenizer = backend, tokenizer
        self.name, self.model_id, self.engine = backend.name, backend.model_id, backend.engine
        self.seconds, self.tokens = 0.0, 0

    def chat(self, conversations, **kwargs):
        start = time.perf_counter()
        answers = self.backend.chat(conversations, **kwargs)
        self.seconds += time.perf_counter() - start
        self.tokens += sum(len(self.tokenizer(a, add_special_tokens=False)["input_ids"]) for per in answers for a in per)
        return answers


def worker(backend_name: str, the_job: dict, threads: int, out: Path) -> None:
    """One backend's run: load, every type's pool, the greedy probe; results as JSON in `out`."""
    params = the_job["describe"]
    start = time.perf_counter()
    if backend_name == "transformers":
        from stages.describe.backends import TransformersBackend

        backend = TransformersBackend(str(DEFAULT_DEST), GGUF_NAME, GGUF_SHA256, device="cpu", threads=threads)
        tokenizer = backend.tokenizer
    else:
        from stages.describe.backends import VLLMBackend

        backend = VLLMBackend(stage_config.SMOLLM2_SAFETENSORS, seed=the_job["seed"], engine_args=VLLM_ARGS,
                              threads=threads)
        tokenizer = backend.llm.get_tokenizer()
    load_s = time.perf_counter() - start
    timed = Timed(backend, tokenizer)
    pools = {}
    for spurious_type in params["types"]:
        pool = generate_pool(load_prompt(spurious_type), timed, params, domain=the_job["domain"],
                             classnames=the_job["classnames"], seed=the_job["seed"])
        step1 = [r for r in pool.rejections if r.stage == "instance"]
        listed = len(step1) + len(pool.rows) + sum(r.stage == "template" for r in pool.rejections)
        pools[spurious_type] = {"lines": listed, "readable": listed - sum(r.reason in UNREADABLE for r in step1),
                                "templates": [row["template"] for row in pool.rows],
                                # the words of the kept phrases (the templates without their scaffold)
                                "words": sorted({w for row in pool.rows for w in re.findall(r"[a-z]+", row["phrase"])})}
    generation = {"seconds": timed.seconds, "tokens": timed.tokens}
    probe = [(t, line) for t in params["types"] for line in load_prompt(t).example_lines()]
    greedy = timed.chat([template_messages(load_prompt(t), line) for t, line in probe], n=1, temperature=0.0,
                        top_p=1.0, max_tokens=params["max_words"] + 16, seed=the_job["seed"], desc="probe")
    out.write_text(json.dumps({"backend": backend_name, "load_s": load_s, "generation": generation, "pools": pools,
                               "probe": [[t, line, a[0]] for (t, line), a in zip(probe, greedy)],
                               "engine": backend.engine}, default=str))


def table(results: dict) -> str:
    """The side-by-side table: one row per figure, a column per backend and their ratio."""
    hf, vl = results["transformers"], results["vllm"]

    def figures(r):
        pools = r["pools"].values()
        lines, readable = sum(p["lines"] for p in pools), sum(p["readable"] for p in pools)
        gen = r["generation"]
        return {"load (s)": r["load_s"], "generation (s)": gen["seconds"], "wall (s)": r["wall_s"],
                "generated tokens": gen["tokens"], "tokens/s": gen["tokens"] / gen["seconds"],
                "step-1 lines": lines, "readable share": readable / max(lines, 1),
                "templates kept": sum(len(p["templates"]) for p in pools),
                "distinct words (kept phrases)": len({w for p in pools for w in p["words"]})}

    a, b = figures(hf), figures(vl)
    rows = ["| figure | transformers (float32) | vllm CPU (bfloat16) | vllm / transformers |", "|---|---:|---:|---:|"]
    for key in a:
        fmt = "{:.2f}" if isinstance(a[key], float) else "{}"
        rows.append(f"| {key} | {fmt.format(a[key])} | {fmt.format(b[key])} | {b[key] / a[key]:.2f} |"
                    if a[key] else f"| {key} | {a[key]} | {b[key]} | |")
    same = sum(x[2].strip() == y[2].strip() for x, y in zip(hf["probe"], vl["probe"]))
    rows.append(f"| identical greedy answers (probe) | {same} of {len(hf['probe'])} | | |")
    shared = {t: len(set(hf["pools"][t]["templates"]) & set(vl["pools"][t]["templates"])) for t in hf["pools"]}
    rows.append(f"| templates in both pools | {sum(shared.values())} | | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", nargs="+", default=["background", "texture", "quality"])
    ap.add_argument("--n-samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=stage_config.DESCRIBE_PYTHON, help="the describe environment's interpreter")
    ap.add_argument("--out", default="bench/results/describe_backends.json")
    ap.add_argument("--worker", choices=["transformers", "vllm"], help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, json.loads(args.job), args.threads, Path(args.out))

    # the models, as the rules fetch_smollm2 and convert_smollm2 make them
    fetch_smollm2(DEFAULT_DEST)
    subprocess.run([sys.executable, "-m", "stages.describe", "convert"], check=True)
    the_job = json.dumps(job(args.types, args.n_samples, args.seed))
    results = {}
    for name, python in (("transformers", sys.executable), ("vllm", args.python)):
        part = Path(args.out).with_suffix(f".{name}.json")
        part.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        subprocess.run([python, __file__, "--worker", name, "--job", the_job, "--threads", str(args.threads),
                        "--out", str(part)], check=True, env={**os.environ, "PYTHONPATH": str(REPO),
                                                              "TQDM_DISABLE": "1"})
        results[name] = {**json.loads(part.read_text()), "wall_s": time.perf_counter() - start}
        part.unlink()
    Path(args.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"SynthBirds' describe job (synthworld): types {args.types}, n_samples {args.n_samples}, seed {args.seed}, "
          f"{args.threads} threads each, one backend at a time\n")
    print(table(results))


if __name__ == "__main__":
    main()
