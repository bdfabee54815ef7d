#!/usr/bin/env bash
# Final GPU run of a session: all CUDA / dist tests, the BF16 MoE-layer breakdown at 1,024
# tokens (issue 7's "MoE layer <= 1.25x its expert GEMMs"), then the standard FP8 workloads.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; mkdir -p $OUT/r
$T --gtest_filter="${TESTS:-Cuda*:Dist*:TensorParallel*}" > $OUT/r/tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED" $OUT/r/tests.log | head -8
ncu --csv --print-units base --metrics gpu__time_duration.sum,dram__bytes.sum --clock-control none \
  --profile-from-start off $B bench-step --model "synthetic:mixtral-8x7b?layers=2" --device cuda \
  --batch 8 --context 128 --prefill --iters 2 > $OUT/r/ncu_bf16_prefill1024.csv 2>/dev/null
echo "== BF16, 1,024-token prefill step, 2 layers (per step)"
python3 tools/ncu_summary.py $OUT/r/ncu_bf16_prefill1024.csv 2 | head -16
[ "${SKIP_STANDARD:-0}" = 1 ] || bash tools/gpu_standard_fp8.sh "${TAG:-h100-fp8-fp8kv-s2}"
