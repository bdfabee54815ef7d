#!/usr/bin/env bash
# Session 7, second run: the counted SiLU·mul variants (MIXSERVE_SILU_VARIANT 0 = expf / IEEE
# division on 1,024 threads, 1 = __expf / __fdividef, 2 = that on 896 threads for F = 14,336;
# KVARIANTS picks them; commit c9c872f also had 3 = a streaming kernel, never run)
# timed alone by bench-kernels (L2 flushed, checked against the host) at 1,536 and 8,192
# tokens, the grouped-MoE GPU tests (SANITIZE: a gtest filter under compute-sanitizer
# memcheck), then OFF-128 (full model, FP8 + FP8 KV) per VARIANTS at OFF_CFG. Reports in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s7}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
for v in ${KVARIANTS:-0 1 2}; do
  MIXSERVE_SILU_VARIANT=$v timeout 60 $B bench-kernels --only silu_grouped --tokens 1536 8192 \
    --iters 30 --out $R/$TAG-silu-variant$v.json > $R/$TAG-silu-variant$v.log 2>&1
  echo "variant $v rc=$?"; grep silu_mul_grouped $R/$TAG-silu-variant$v.log
done
for v in ${TEST_VARIANTS:-2}; do  # the tests under each variant
  MIXSERVE_SILU_VARIANT=$v timeout 120 $T --gtest_filter="${TESTS:-CudaMoePaddedFp8*}" \
    > $R/$TAG-gpu-tests-silu$v.log 2>&1; echo "tests (variant $v) rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED" $R/$TAG-gpu-tests-silu$v.log | head
done
if [ -n "${SANITIZE:-}" ]; then
  MIXSERVE_SILU_VARIANT=${SANITIZE_VARIANT:-2} timeout 240 compute-sanitizer --tool memcheck $T \
    --gtest_filter="$SANITIZE" > $R/$TAG-memcheck.log 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" $R/$TAG-memcheck.log | head -4
fi
tar czf $OUT/results.tgz -C $R .
IFS=: read -r mb nt mf <<< "${OFF_CFG:-1536:8192:0.95}"
for v in ${VARIANTS:-0 2}; do
  name=OFF-128-b$mb-t$nt-m$mf-n${NREQ:-3072}-silu$v
  MIXSERVE_SILU_VARIANT=$v timeout ${LIMIT:-130} $B bench offline --input-len 128 --output-len 128 \
    --model synthetic:mixtral-8x7b --device cuda --quantization fp8 --kv-cache-dtype fp8 \
    --num-requests ${NREQ:-3072} --warmup 64 --max-batch $mb --max-num-batched-tokens $nt \
    --gpu-memory-fraction $mf --workload-id OFF-128 --out $R/$TAG-$name.json > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A1 "^run " $R/$TAG-$name.log | tail -1 | cut -c1-110
  grep -h "engine steps" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | cut -c1-120
  tar czf $OUT/results.tgz -C $R .
done
