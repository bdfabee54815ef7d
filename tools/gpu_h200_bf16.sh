#!/usr/bin/env bash
# The full Mixtral 8x7B in BF16 (87 GiB) beside FP8 on one H200: decode step times.
set -uo pipefail
B=.devcarry/bin/mixserve; M=synthetic:mixtral-8x7b
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for b in 1 64 256; do
  $B bench-step --model $M --device cuda --batch $b --context 192 --iters 10 2>/dev/null
  $B bench-step --model $M --device cuda --quantization fp8 --kv-cache-dtype fp8 --batch $b --context 192 --iters 10 2>/dev/null
done
