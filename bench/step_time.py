"""Time one training step of FLYP, of our StarFT and of the released StarFT recipe, on one batch.

    python bench/step_time.py                                  # tiny CLIP on CPU
    python bench/step_time.py --model ViT-B-16 --batch 128     # random-init ViT-B/16 (no download)

Every variant runs forward, backward and an AdamW step of the same student on the same batch:

  flyp            our FLYP step: contrastive loss; the text encoder sees the C distinct class captions
  flyp_all        FLYP encoding all B class captions (the FLYP / released code's way), for reference
  starft          our StarFT step: FLYP + one no-grad teacher image forward on the (augmented) batch,
                  teacher text features looked up, student text encoder on the distinct captions
  starft_cached   our StarFT step with `augment: false`: teacher image features cached
  starft_untrimmed  our StarFT step without cutting the token batches after the end-of-text token
  official        a re-implementation of the released step (src/main.py of alinlab/StarFT): student
                  image + B class captions, student on B spurious captions, teacher image + B
                  spurious captions forward every step, then the StarReg loss

The ratios printed are median step times. Same precision for all (bf16 autocast on CUDA); the
released code itself runs fp32 under DataParallel, which is slower still. Each variant's FLOPs per
step are counted once by torch's FlopCounterMode (matmuls and convolutions, forward and backward,
the teacher's no-grad forward included); model-FLOPs utilisation (MFU) is those FLOPs per second
over the device's dense bf16 peak (`--peak-tflops`, or the table PEAK_TFLOPS by device name).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import statistics
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from stages import config as stage_config
from stages.finetune import distributed
from stages.finetune.captions import Captions
from stages.finetune.step import Student, TeacherImages, compute_loss, prepare_batch
from stages.method import models
from stages.method.losses import clip_contrastive_loss, star_regularizer
from stages.method.models import autocast_dtype, can_trim_text, resolve_device
from stages.method.registry import METHODS
from stages.synthetic.teacher import tiny_clip_config
from stages.toys import REPO, TINY_MODEL_CFG

PRESETS = {"tiny": TINY_MODEL_CFG}   # the tests' tiny CLIP


# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched against
# torch.cuda.get_device_name(); SXM parts (the PCIe H100 is lower: pass --peak-tflops).
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A6000": 154.8, "4090": 165.2}


def peak_tflops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def count_flops(step) -> int:
    """FLOPs of one call of `step` (it runs, so it also serves as a warm-up step)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def synth_preset() -> dict:
    """The synthetic world's CLIP as config/synthbirds.yaml pre-trains it."""
    world = stage_config.load(REPO / "config" / "synthbirds.yaml")["datasets"]["synthbirds"]
    return tiny_clip_config(world["pretrain"], world["synthetic"]["image_size"])


def build(model_name: str, device):
    preset = synth_preset() if model_name == "synth" else PRESETS.get(model_name)
    if preset is not None:
        model = open_clip.CLIP(**preset)
        tokenizer = open_clip.SimpleTokenizer(context_length=preset["text_cfg"]["context_length"])
    else:
        model = open_clip.create_model(model_name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(model_name)
    return model.to(device), tokenizer


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="'tiny', 'synth' or an open_clip model name (random init)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--pool", type=int, default=58, help="spurious templates per class (released bg pool: 58)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--variants", default="", help="comma-separated subset of the variants (default: all)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, for MFU")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)

    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = autocast_dtype(a.precision, device)
    autocast = functools.partial(models.autocast, device, dtype)
    torch.manual_seed(0)

    teacher, tokenizer = build(a.model, device)
    teacher.eval().requires_grad_(False)
    student = Student(copy.deepcopy(teacher).train().requires_grad_(True), None)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-5, weight_decay=0.1, fused=cuda or None)
    tau0 = float(teacher.logit_scale.exp())
    ctx = distributed.Context(device=device)

    # Texts: C class captions, then C x K spurious captions (row c * K + k: template k, class c).
    C, K, B = a.classes, a.pool, a.batch
    texts = [f"a photo of a class{c}." for c in range(C)] + \
            [f"a photo of a class{c} in scene number {k}." for c in range(C) for k in range(K)]
    captions = Captions(tokenizer(texts), torch.arange(C), C + torch.arange(C * K).view(C, K),
                        trim=can_trim_text(teacher))
    untrimmed = dataclasses.replace(captions, trim=False)
    with torch.no_grad(), autocast():
        teacher_text = torch.cat([F.normalize(teacher.encode_text(t.to(device)).float(), dim=-1)
                                  for t in captions.tokens.split(4096)])
    size = open_clip.get_model_preprocess_cfg(teacher)["size"]
    size = size if isinstance(size, int) else size[0]
    y = torch.randint(C, (B,))
    raw = (torch.randn(B, 3, size, size), y, torch.arange(B), captions.spurious_rows[y, torch.randint(K, (B,))])
    if cuda:
        raw = tuple(t.pin_memory() for t in raw)
    per_step = TeacherImages(teacher, B, cache=False)
    cached = TeacherImages(teacher, B, cache=True)

    def ours(method: str, teacher_images, captions=captions):
        def step():
            batch = prepare_batch(raw, captions, METHODS[method], device)
            loss = compute_loss(student, teacher_images, teacher_text, tau0, METHODS[method], batch, 0.5, ctx, autocast,
                                kl_scale="student")
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            opt.step()
        return step

    def flyp_all():
        images, y, _, _ = (t.to(device, non_blocking=True) for t in raw)
        tokens = captions.tokens[captions.caption_row[raw[1]]].to(device, non_blocking=True)
        with autocast():
            image, text, _, scale = student(images, tokens)
        loss = clip_contrastive_loss(F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1), scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def official():
        images, y, _, spurious = (t.to(device, non_blocking=True) for t in raw)
        class_tokens = captions.tokens[captions.caption_row[raw[1]]].to(device, non_blocking=True)
        spurious_tokens = captions.tokens[raw[3]].to(device, non_blocking=True)
        with autocast():
            image, text, _, scale = student(images, class_tokens)        # model(ft_image, ft_text)
            spurious_text = student.clip.encode_text(spurious_tokens)     # model(None, ft_spurious)
            with torch.no_grad():                                         # model_orig(ft_image, ft_spurious)
                t_image = teacher.encode_image(images)
                t_text = teacher.encode_text(spurious_tokens)
                t_scale = teacher.logit_scale.exp()
        n = lambda x: F.normalize(x.float(), dim=-1)  # noqa: E731
        loss = clip_contrastive_loss(n(image), n(text), scale) + 0.5 * star_regularizer(
            n(image), n(spurious_text), n(t_image), n(t_text), y, t_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    cached.__call__(raw[0].to(device), raw[2])    # fill the cache once, as epoch 1 would
    variants = {"flyp": ours("flyp", per_step), "flyp_all": flyp_all, "starft": ours("starft", per_step),
                "starft_cached": ours("starft", cached), "starft_untrimmed": ours("starft", per_step, untrimmed),
                "official": official}
    if a.variants:
        unknown = set(a.variants.split(",")) - set(variants)
        if unknown:
            p.error(f"--variants: unknown {sorted(unknown)}; known: {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in a.variants.split(",")}
    flops = {name: count_flops(step) for name, step in variants.items()}
    times = {name: [] for name in variants}
    for r in range(a.warmup + a.steps):          # interleaved, so that drifts hit every variant alike
        for name, step in variants.items():
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize()
            if r >= a.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}

    n_params = sum(p.numel() for p in teacher.parameters()) / 1e6
    peak = a.peak_tflops or peak_tflops(device)
    print(f"model {a.model} ({n_params:.1f}M params), batch {B}, {C} classes x {K} spurious templates, "
          f"device {device}{' ' + torch.cuda.get_device_name(device) if cuda else ''}, "
          f"precision {'bf16 autocast' if dtype else 'fp32'}, threads {torch.get_num_threads()}, "
          f"median of {a.steps} steps, peak {f'{peak:.0f} TFLOP/s' if peak else 'unknown (no MFU)'}")
    results = {}
    for k, v in med.items():
        tflops = flops[k] / (v / 1000) / 1e12
        results[k] = {"ms_per_step": v, "images_per_s": B / v * 1000, "gflop_per_image": flops[k] / B / 1e9,
                      "tflop_per_s": tflops, "mfu": tflops / peak if peak else None}
        mfu = f"   MFU {tflops / peak:6.1%}" if peak else ""
        print(f"  {k:17s} {v:9.2f} ms/step   {B / v * 1000:8.1f} img/s   {flops[k] / B / 1e9:7.2f} GFLOP/img"
              f"   {tflops:8.3f} TFLOP/s{mfu}")
    ratios = [("starft", "flyp", "goal <= 1.15"), ("starft_cached", "flyp", ""), ("official", "starft", "goal >= 1.5"),
              ("official", "flyp", ""), ("flyp_all", "flyp", ""), ("starft_untrimmed", "starft", "")]
    for num, den, goal in ratios:
        if num in med and den in med:
            results[f"{num}/{den}"] = med[num] / med[den]
            print(f"ratio {num} / {den}".ljust(32) + f"= {med[num] / med[den]:.3f}" + (f"   ({goal})" if goal else ""))
    if a.json:
        Path(a.json).write_text(json.dumps({"model": a.model, "batch": B, "device": str(device), "peak_tflops": peak,
                                            "results": results}, indent=1))


if __name__ == "__main__":
    main()
