#!/usr/bin/env bash
# One short GPU check (a few minutes on one H200): step-time ratios of FLYP, our StarFT and the
# released recipe on a random-init ViT-B/16 at batch 128 in bf16, then a few steps of the real
# fine-tune stage on CUDA (embed -> starft / ft / augment off -> resume -> evaluate).
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)"
echo "== step time, ViT-B-16 (random init), batch 128, bf16 =="
timeout 240 $PY bench/step_time.py --model ViT-B-16 --batch 128 --precision bf16 --steps 10 --warmup 3
echo "== same, 1000 classes x 58 templates (ImageNet-like: almost every spurious caption distinct) =="
timeout 120 $PY bench/step_time.py --model ViT-B-16 --batch 128 --precision bf16 --steps 5 --warmup 2 --classes 1000
echo "== fine-tune stage on CUDA =="
timeout 240 $PY bench/gpu_smoke.py --model ViT-B-16 --batch 64
