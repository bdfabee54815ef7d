#!/usr/bin/env bash
# The full Mixtral 8x7B in BF16 (87 GiB) beside FP8 on one H200: decode step times at batch
# 1 / 64 / 256, then BF16 LAT-1 and OFF-BS at batch 1,024. Reports in $OUT (results.tgz).
set -uo pipefail
B=.devcarry/bin/mixserve; M=synthetic:mixtral-8x7b
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
for b in 1 64 256; do
  timeout 60 $B bench-step --model $M --device cuda --batch $b --context 192 --iters 10 2>/dev/null | tee -a $R/h200-bench-step.jsonl
  timeout 60 $B bench-step --model $M --device cuda --quantization fp8 --kv-cache-dtype fp8 --batch $b --context 192 --iters 10 2>/dev/null | tee -a $R/h200-bench-step.jsonl
done
off() {
  local name=$1; shift
  timeout 120 $B bench offline --model $M --device cuda --input-len 128 --output-len 128 --out $R/h200-bf16-$name.json "$@" > $R/h200-bf16-$name.log 2>&1
  echo "== $name rc=$?"; grep -A3 "^run " $R/h200-bf16-$name.log | grep -v "^\[" | head -2 | cut -c1-130
}
off LAT-1 --num-requests 8 --warmup 1 --max-batch 1 --workload-id LAT-1
off OFF-BS-1024 --num-requests 1024 --warmup 32 --max-batch 1024 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95 --workload-id OFF-BS
tar czf $OUT/results.tgz -C $R .; rm -rf $R
