#!/usr/bin/env bash
# wgmma prefill attention (branch h-pfwg) on the GPU: SASS check, the CudaAttention tests
# (every prefill kernel), then bench attention with the mma.sync and wgmma prefill kernels on
# the same warm card, bf16 and fp16; MEMCHECK=1: memcheck last.
# Usage: tools/gpu_pfwg.sh [carry dir] (default .devcarry).
set -uo pipefail
C=${1:-.devcarry}; B=$C/bin/mixserve; T=$C/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
cuobjdump -sass $B 2>/dev/null | awk '/Function :/{f=$0} /HGMMA/{n[f]++} END{for(k in n) print n[k], k}' \
  | grep -i prefill_wgmma
timeout 150 $T --gtest_filter="${TESTS:-CudaAttention*}" > $OUT/tests.log 2>&1; rc=$?
echo "tests rc=$rc"; grep -E "^\[  FAILED|^\[  PASSED|^\[       OK|Failure|rel|Expected" $OUT/tests.log | head -30
[ $rc -ne 0 ] && [ -z "${FORCE_BENCH:-}" ] && exit 1
for dt in ${DTYPES:-bf16 fp16}; do
  for k in ${KERNELS:-mma wgmma}; do
    MIXSERVE_PREFILL_ATTN=$k timeout 60 $B bench attention --dtype $dt --iters 30 --cases prefill \
      --json $OUT/h100-pfwg-$k-$dt.json | grep -E "fast|CHECK" | sed "s/^/$k $dt: /"
  done
done
if [ -n "${MEMCHECK:-}" ]; then
  timeout 100 compute-sanitizer --tool memcheck $T --gtest_filter='CudaAttentionFast.MatchesReferenceAndGenericKernel' \
    > $OUT/memcheck.log 2>&1; echo "memcheck rc=$?"; tail -4 $OUT/memcheck.log
fi
