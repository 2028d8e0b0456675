#!/usr/bin/env bash
# The CUDA checks in one short run, for a machine with a GPU and ltfast installed:
#   bash benchmarks/gpu_check.sh [OUT]
# a few epochs on the synthetic set under bf16 autocast; LDAM-DRW with mixup and post-hoc
# adjustment; Balanced Softmax with CMO under AutoAugment + Cutout (CMO active in epoch 4 of
# 9); resume on CUDA; bf16 with torch.compile; cRT from the first run, and a sweep of CE then
# cRT with 4 runs sharing the GPU; the methods of 2021-2023 for 2 epochs each (ImbSAM, IB from
# epoch 1, GCL, Weight Balancing's stage 2 with MaxNorm); the loader benchmark (standard and
# strong pipelines) and the train-step benchmark (numerics, and every method's step against
# CE's) on the GPU. Results (run folders, JSON tables, the sweep) go to OUT.
set -euo pipefail
out=${1:-gpu-check}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
common=(--dataset synthetic --data-root "$out/data" --quiet --overwrite)

python -m ltfast.train "${common[@]}" --epochs 5 --precision bf16 --out "$out/amp"
python -m ltfast.train "${common[@]}" --epochs 3 --precision bf16 \
  --config configs/cifar10_lt/ldam_drw.yaml --reweight-start-epoch 2 --mix mixup --eval-logit-tau 1 --out "$out/ldam_drw"
python -m ltfast.train "${common[@]}" --epochs 9 --precision bf16 \
  --config configs/cifar10_lt/cmo_balanced_softmax.yaml --augment autoaugment --cutout 16 \
  --out "$out/cmo_strong"
python -m ltfast.train "${common[@]}" --epochs 2 --precision bf16 --out "$out/resume"
python -m ltfast.train --resume "$out/resume" --epochs 3 --quiet
python -m ltfast.train "${common[@]}" --epochs 3 --precision bf16 --compile --out "$out/compile"
python -m ltfast.train "${common[@]}" --epochs 2 --precision bf16 \
  --config configs/cifar10_lt/crt.yaml --init-from "$out/amp" --out "$out/crt"
python -m ltfast.train "${common[@]}" --epochs 2 --precision bf16 --optimizer imbsam \
  --imbsam-eta 200 --out "$out/imbsam"
python -m ltfast.train "${common[@]}" --epochs 2 --precision bf16 --loss ib --ib-start-epoch 1 \
  --reweight inverse --reweight-start-epoch 1 --out "$out/ib"
python -m ltfast.train "${common[@]}" --epochs 2 --precision bf16 --loss gcl --classifier normed \
  --mix mixup --out "$out/gcl"
python -m ltfast.train "${common[@]}" --epochs 2 --precision bf16 \
  --config configs/cifar10_lt/wb.yaml --init-from "$out/amp" --out "$out/wb"
python -m ltfast.sweep configs/cifar10_lt/ce.yaml configs/cifar10_lt/crt.yaml --seeds 0 1 \
  --jobs 4 --set dataset=synthetic --set data_root="$out/data" --set epochs=3 \
  --set precision=bf16 --out "$out/sweep"
python benchmarks/loader.py --device cuda --json "$out/loader.json" \
  --strong-json "$out/loader_strong.json"
python benchmarks/train_step.py --device cuda --steps 200 --json "$out/train_step.json"
