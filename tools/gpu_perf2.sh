#!/usr/bin/env bash
# Correctness of the changed kernels, then MoE lanes 1/2/4 at decode batch 1024 and an 8192-token
# prefill step (full synthetic Mixtral, FP8 + FP8 KV), then an ncu breakdown with the default lanes.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
M=synthetic:mixtral-8x7b; F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}
$T --gtest_filter="${TESTS:-CudaFp8*:CudaMoe*:CudaBackend*:CudaFp8Model*}" > $OUT/tests.log 2>&1; echo "tests rc=$?"; tail -3 $OUT/tests.log
for l in ${LANES:-1 2 4}; do
  echo "lanes=$l"
  MIXSERVE_MOE_LANES=$l $B bench-step --model $M $F --batch 1024 --context 192 --iters 10 2>/dev/null | tee -a $OUT/steps.jsonl
done
$B bench-step --model $M $F --batch 64 --context 128 --prefill --iters 5 2>/dev/null | tee -a $OUT/steps.jsonl
NCU="ncu --csv --print-units base --metrics gpu__time_duration.sum --clock-control none --profile-from-start off"
$NCU $B bench-step --model "$M?layers=2" $F --batch 1024 --context 192 --iters 2 > $OUT/ncu_decode1024.csv 2>/dev/null
$NCU $B bench-step --model "$M?layers=2" $F --batch 64 --context 128 --prefill --iters 2 > $OUT/ncu_prefill8192.csv 2>/dev/null
echo "== decode 1024"; python3 tools/ncu_summary.py $OUT/ncu_decode1024.csv 2 | head -12
echo "== prefill 8192"; python3 tools/ncu_summary.py $OUT/ncu_prefill8192.csv 2 | head -8
