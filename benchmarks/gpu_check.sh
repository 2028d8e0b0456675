#!/usr/bin/env bash
# The CUDA checks in one short run, for a machine with a GPU and ltfast installed:
#   bash benchmarks/gpu_check.sh [OUT] [all|checks|benchmarks]
# checks: a few epochs on the synthetic set under bf16 autocast; LDAM-DRW with mixup and
# post-hoc adjustment; Balanced Softmax with CMO under AutoAugment + Cutout (CMO active in
# epoch 4 of 9); resume on CUDA; bf16 with torch.compile; cRT from the first run, and a sweep
# of CE then cRT with 4 runs sharing the GPU; the methods of 2021-2023 for 2 epochs each
# (ImbSAM, IB from epoch 1, GCL, Weight Balancing's stage 2 with MaxNorm).
# benchmarks: the train-step benchmark (numerics, and every method's step against CE's) and
# the loader benchmark (standard and strong pipelines) on the GPU.
# Every check runs even when one before it failed (a lent GPU is rare: one pass must say all
# it can); each prints "== NAME: ok|FAILED (seconds)", and the script fails if any did.
# STEPS=N sets the train-step benchmark's steps (200). Results (run folders, JSON tables,
# the sweep) go to OUT.
set -uo pipefail
out=${1:-gpu-check}
part=${2:-all}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 1
common=(--dataset synthetic --data-root "$out/data" --quiet --overwrite)
failed=()

check() {  # check NAME COMMAND...
  local name=$1 start=$SECONDS status=0
  shift
  "$@" || status=$?
  if ((status == 0)); then
    echo "== $name: ok ($((SECONDS - start)) s)"
  else
    echo "== $name: FAILED, exit $status ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

train() { python -m ltfast.train "${common[@]}" --precision bf16 "$@"; }

resume_on_cuda() {
  train --epochs 2 --out "$out/resume" &&
    python -m ltfast.train --resume "$out/resume" --epochs 3 --quiet
}

if [[ $part == all || $part == checks ]]; then
  check amp train --epochs 5 --out "$out/amp"
  check ldam_drw_mixup train --epochs 3 --config configs/cifar10_lt/ldam_drw.yaml \
    --reweight-start-epoch 2 --mix mixup --eval-logit-tau 1 --out "$out/ldam_drw"
  check cmo_strong train --epochs 9 --config configs/cifar10_lt/cmo_balanced_softmax.yaml \
    --augment autoaugment --cutout 16 --out "$out/cmo_strong"
  check resume resume_on_cuda
  check compile train --epochs 3 --compile --out "$out/compile"
  check crt train --epochs 2 --config configs/cifar10_lt/crt.yaml --init-from "$out/amp" \
    --out "$out/crt"
  check imbsam train --epochs 2 --optimizer imbsam --imbsam-eta 200 --out "$out/imbsam"
  check ib train --epochs 2 --loss ib --ib-start-epoch 1 --reweight inverse \
    --reweight-start-epoch 1 --out "$out/ib"
  check gcl train --epochs 2 --loss gcl --classifier normed --mix mixup --out "$out/gcl"
  check wb train --epochs 2 --config configs/cifar10_lt/wb.yaml --init-from "$out/amp" \
    --out "$out/wb"
  check sweep python -m ltfast.sweep configs/cifar10_lt/ce.yaml configs/cifar10_lt/crt.yaml \
    --seeds 0 1 --jobs 4 --set dataset=synthetic --set data_root="$out/data" --set epochs=3 \
    --set precision=bf16 --out "$out/sweep"
fi
if [[ $part == all || $part == benchmarks ]]; then
  check train_step_benchmark python benchmarks/train_step.py --device cuda \
    --steps "${STEPS:-200}" --json "$out/train_step.json"
  check loader_benchmark python benchmarks/loader.py --device cuda --json "$out/loader.json" \
    --strong-json "$out/loader_strong.json"
fi
echo "failed: ${failed[*]:-none}"
((${#failed[@]} == 0))
