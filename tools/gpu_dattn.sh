#!/usr/bin/env bash
# Decode attention at short contexts (branch h-dattn), on one GPU: registers of the decode
# kernels, the attention tests (correctness first), the kernel benchmark with an E4M3 and a BF16
# cache (each case checked against the generic kernel before it is timed; --sweep: stream and
# tiled kernels at several split counts), then the full-model batch-1,024 FP8 decode step with
# the tiled kernel off and on (MIXSERVE_DECODE_TILED). Optional: SANITIZE=1 (compute-sanitizer
# memcheck over the tiled tests), STEP=0 (no full-model steps), SWEEP="" (no sweep).
# Run from the repository root with the bundle in $D (tools/device_bundle.sh's .devcarry/).
set -uo pipefail
D=${D:-.devcarry-dattn}; B=$D/bin/mixserve; T=$D/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; TAG=${TAG:-h100-dattn}; SWEEP=${SWEEP---sweep}
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
echo "== decode kernels: registers / stack"
cuobjdump -res-usage $B 2>/dev/null | grep -A1 -E "attention_decode_(tiled_)?kernel" \
  | grep -oE "decode_(tiled_)?kernelI[A-Za-z0-9_]{0,40}|REG:[0-9]+ STACK:[0-9]+" | paste - - | sort | uniq
echo "== tests"
timeout 150 $T --gtest_filter="${TESTS:-CudaAttention*}" > $OUT/tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|tests ran" $OUT/tests.log | head -12
for kv in fp8 auto; do
  timeout 150 $B bench attention --dtype bf16 --kv $kv --cases "${CASES:-decode}" --iters 30 $SWEEP \
    --json $OUT/$TAG-bf16-kv$kv.json > $OUT/bench-$kv.log 2>&1
  echo "== bench attention --kv $kv: rc=$?"; cat $OUT/bench-$kv.log
done
if [ "${SANITIZE:-0}" = 1 ]; then
  timeout 150 compute-sanitizer --tool memcheck $T --gtest_filter='CudaAttentionFast.Tiled*' \
    > $OUT/memcheck.log 2>&1
  echo "== memcheck rc=$?"; tail -4 $OUT/memcheck.log
fi
if [ "${STEP:-1}" = 1 ]; then
  for tiled in 0 1; do
    echo "== bench-step FP8 batch 1024 context 192, MIXSERVE_DECODE_TILED=$tiled"
    MIXSERVE_DECODE_TILED=$tiled timeout 150 $B bench-step --model synthetic:mixtral-8x7b \
      --device cuda --quantization fp8 --kv-cache-dtype fp8 --batch 1024 --context 192 \
      --iters 10 2>&1 | tail -4
  done
fi
