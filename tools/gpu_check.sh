#!/usr/bin/env bash
# Merged-tree check on the GPU: every CUDA / dist test, decode-attention registers and time,
# the full-model batch-1024 decode step.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
M=synthetic:mixtral-8x7b; F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}
cuobjdump -res-usage $B 2>/dev/null | grep -A1 "attention_decode_kernel" | grep -oE "REG:[0-9]+|STACK:[0-9]+" | paste - - | sort | uniq -c
$T --gtest_filter="${TESTS:-Cuda*:Dist*:TensorParallel*}" > $OUT/tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED" $OUT/tests.log | head -12
ncu --csv --print-units base --metrics gpu__time_duration.sum --clock-control none --profile-from-start off \
  -k regex:attention_decode $B bench-step --model "$M?layers=2" $F --batch 1024 --context 192 --iters 2 > $OUT/ncu_attn.csv 2>/dev/null
python3 tools/ncu_summary.py $OUT/ncu_attn.csv 2 | head -2 | tail -1
$B bench-step --model $M $F --batch 1024 --context 192 --iters 10 2>/dev/null
