#!/usr/bin/env bash
# Unscaled FP8 expert GEMMs (MIXSERVE_FP8_UNSCALED) vs cuBLASLt outer-vector scales: tests, then
# decode 1024 x 192 and an 8,192-token prefill step (full synthetic Mixtral, FP8 + FP8 KV).
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
M=synthetic:mixtral-8x7b; F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}
$T --gtest_filter='CudaOps*:CudaFp8*:CudaMoe*:CudaBackend*' > $OUT/tests.log 2>&1; echo "tests rc=$?"; grep -E "FAILED|PASSED|unscaled|e2e\] \| tiny-e8" $OUT/tests.log | head -20
for u in 0 1; do
  echo "unscaled=$u"
  MIXSERVE_FP8_UNSCALED=$u MIXSERVE_LOG=debug $B bench-step --model $M $F --batch 1024 --context 192 --iters 10 2> $OUT/d$u.err
  MIXSERVE_FP8_UNSCALED=$u MIXSERVE_LOG=debug $B bench-step --model $M $F --batch 64 --context 128 --prefill --iters 5 2> $OUT/p$u.err
done
grep -h "autotune" $OUT/d1.err $OUT/p1.err | sed 's/.*GEMM autotune //' | grep E4M3 | sort | uniq | head -24
