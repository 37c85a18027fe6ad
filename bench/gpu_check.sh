#!/usr/bin/env bash
# The GPU check, one script run in one go (under 8 minutes on one H200, no download, no network):
#   bash bench/gpu_check.sh            # CUDA: ViT-B/16 (open_clip config, random weights), bf16
#   bash bench/gpu_check.sh --smoke    # CPU, tiny CLIP, small sizes: every step runs (CI does this)
# Steps:
#   1. FLYP and StarFT step time at global batch 512 on one GPU, 1,000 classes x 58 spurious
#      templates: images/s, FLOPs per image (torch's FlopCounterMode) and model-FLOPs utilisation
#      against the card's dense bf16 peak (bench/step_time.py); the goals are FLYP >= 40% MFU and
#      StarFT <= 1.15 x FLYP's step;
#   2. the loader's decoders, JPEGs of ImageNet's typical size: images/s per core (PIL, the
#      workers' path) and per GPU (`finetune.decode: device`, nvJPEG) (bench/loader.py);
#   3. a few steps of the real fine-tune stage on the device (embed -> starft / ft / augment off /
#      device decode -> resume -> evaluate) (bench/gpu_smoke.py);
#   4. the linear probe's objective and gradient at ImageNet's size, 1,281,167 x 512 features and
#      1,000 classes: time and peak device memory, chunked against the former full batch
#      (bench/probe_fit.py; a fit makes up to 2 x 2,000 of these per L2 strength).
# Results go to $OUT (default bench/results/gpu_check/) as JSON next to the printed lines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SMOKE=0
[[ ${1:-} == --smoke ]] && SMOKE=1
OUT=${OUT:-bench/results/gpu_check}
mkdir -p "$OUT"
$PY -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)"

if (( SMOKE )); then
    # the same steps on the CPU with a tiny CLIP and a few images: a check that the script runs
    # after any change of the stages it drives, not a measurement
    echo "== smoke: step time and FLOPs, tiny CLIP, batch 32, CPU =="
    $PY bench/step_time.py --model tiny --batch 32 --classes 8 --pool 4 --steps 1 --warmup 0 \
        --variants flyp,starft --json "$OUT/step_time.json"
    echo "== smoke: loader decoders =="
    $PY bench/loader.py --n 8 --seconds 0.2
    echo "== smoke: the fine-tune stage =="
    $PY bench/gpu_smoke.py --model tiny --device cpu --batch 8 --n-train 32 > "$OUT/gpu_smoke.log"
    tail -n 1 "$OUT/gpu_smoke.log"
    echo "== smoke: the probe's objective =="
    $PY bench/probe_fit.py --n 2000 --classes 50 --device cpu
    echo "gpu_check --smoke: all steps ran"
    exit 0
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== 1. step time, ViT-B-16 (random init), global batch 512, bf16, 1000 classes x 58 templates =="
timeout 240 $PY bench/step_time.py --model ViT-B-16 --batch 512 --precision bf16 --steps 8 --warmup 3 \
    --classes 1000 --variants flyp,starft,starft_cached --json "$OUT/step_time.json"
echo "== 2. loader: decoders, 500x375 JPEGs =="
timeout 90 $PY bench/loader.py --n 512 --seconds 3
echo "== 3. the fine-tune stage on CUDA =="
timeout 240 $PY bench/gpu_smoke.py --model ViT-B-16 --batch 64 | tee "$OUT/gpu_smoke.log"
echo "== 4. the linear probe's objective at 1,281,167 x 512, 1,000 classes =="
timeout 240 $PY bench/probe_fit.py --n 1281167 --dim 512 --classes 1000 --device cuda
