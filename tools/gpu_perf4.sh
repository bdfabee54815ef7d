#!/usr/bin/env bash
# GEMM autotuning: tests, decode/prefill steps with and without it, OFF-128 configurations
# (full synthetic Mixtral 8x7B, FP8 W8A8 + FP8 KV).
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
M=synthetic:mixtral-8x7b; F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}
$T --gtest_filter='CudaOps*:CudaFp8*:CudaMoe*:CudaBackend*:CudaGraph*' > $OUT/tests.log 2>&1; echo "tests rc=$?"; grep -E "FAILED|PASSED" $OUT/tests.log | head
for at in 0 1; do
  echo "autotune=$at"
  MIXSERVE_GEMM_AUTOTUNE=$at MIXSERVE_LOG=debug $B bench-step --model $M $F --batch 1024 --context 192 --iters 10 2> $OUT/step-at$at.err | tee -a $OUT/steps.jsonl
  MIXSERVE_GEMM_AUTOTUNE=$at MIXSERVE_LOG=debug $B bench-step --model $M $F --batch 64 --context 128 --prefill --iters 5 2> $OUT/prefill-at$at.err | tee -a $OUT/steps.jsonl
done
grep -h "autotune" $OUT/step-at1.err $OUT/prefill-at1.err | sed 's/.*GEMM autotune //' | sort | uniq | head -30
run_off() {
  local name=$1; shift
  $B bench offline --model $M $F --input-len 128 --output-len 128 --num-requests 3072 --warmup 64 \
    --workload-id OFF-128 --out $OUT/$name "$@" > $OUT/$name.log 2>&1
  echo "$name $*"; grep -A1 "^run " $OUT/$name.log | tail -1; grep -i "error" $OUT/$name.log | head -3
}
run_off off128-b1024 --max-batch 1024 --max-num-batched-tokens 8192
run_off off128-b1536 --max-batch 1536 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95
run_off off128-b1536-t16k --max-batch 1536 --max-num-batched-tokens 16384 --gpu-memory-fraction 0.95
