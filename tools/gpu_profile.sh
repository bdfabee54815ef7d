#!/usr/bin/env bash
# Step times of the full FP8 model and an ncu per-kernel breakdown of a 2-layer model
# (run on the GPU machine from the repository root, with the bundle in .devcarry/).
set -uo pipefail
B=${B:-.devcarry/bin/mixserve}
M=synthetic:mixtral-8x7b
F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for b in ${BATCHES:-1 256 1024}; do
  $B bench-step --model $M $F --batch $b --context 192 --iters 10 | tee -a $OUT/steps.jsonl
done
$B bench-step --model $M $F --batch 64 --context 128 --prefill --iters 5 | tee -a $OUT/steps.jsonl
NCU="ncu --csv --print-units base --metrics gpu__time_duration.sum --clock-control none --profile-from-start off"
$NCU $B bench-step --model "$M?layers=2" $F --batch 1024 --context 192 --iters 2 \
  > $OUT/ncu_decode1024.csv 2> $OUT/ncu_decode1024.err
$NCU $B bench-step --model "$M?layers=2" $F --batch 64 --context 128 --prefill --iters 2 \
  > $OUT/ncu_prefill8192.csv 2> $OUT/ncu_prefill8192.err
echo "== decode 1024 x ctx 192, 2 layers, per step"; python3 tools/ncu_summary.py $OUT/ncu_decode1024.csv 2
echo "== prefill 64 x 128, 2 layers, per step"; python3 tools/ncu_summary.py $OUT/ncu_prefill8192.csv 2
