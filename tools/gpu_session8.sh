#!/usr/bin/env bash
# Session 8's GPU run (one H100 or H200): the counted SiLU·mul variants timed alone by
# bench-kernels (KVARIANTS; L2 flushed, checked against the host), GPU tests (TESTS, once per
# TEST_VARIANTS entry: TESTS under the default 3, VTESTS under others; MIXSERVE_SILU_VARIANT picks
# the SiLU·mul form), compute-sanitizer
# memcheck of SANITIZE under each SANITIZE_VARIANTS entry, then OFF-128 on the full model at
# OFF_CFGS ("max_batch:max_num_batched_tokens:gpu_memory_fraction:silu_variant", NREQ requests).
# Reports in $OUT/results.tgz, written again after each step so a cut-off run keeps the rest.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s8}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
pack() { tar czf $OUT/results.tgz -C $R .; }
for v in ${KVARIANTS-}; do
  MIXSERVE_SILU_VARIANT=$v timeout 60 $B bench-kernels --only silu_grouped --tokens 1536 8192 \
    --iters 30 --out $R/$TAG-silu-variant$v.json > $R/$TAG-silu-variant$v.log 2>&1
  echo "kernel variant $v rc=$?"; grep silu_mul_grouped $R/$TAG-silu-variant$v.log
done
pack
for v in ${TEST_VARIANTS-}; do
  f="${TESTS:-CudaMoePaddedFp8*}"; [ "$v" != 3 ] && f="${VTESTS:-CudaMoePaddedFp8*}"
  MIXSERVE_SILU_VARIANT=$v timeout ${TEST_LIMIT:-200} $T --gtest_filter="$f" \
    > $R/$TAG-gpu-tests-silu$v.log 2>&1; echo "tests (variant $v) rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED|tests ran" $R/$TAG-gpu-tests-silu$v.log | head -12
  pack
done
for v in ${SANITIZE_VARIANTS-}; do
  MIXSERVE_SILU_VARIANT=$v timeout 200 compute-sanitizer --tool memcheck $T \
    --gtest_filter="$SANITIZE" > $R/$TAG-memcheck-silu$v.log 2>&1
  echo "memcheck (variant $v) rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" $R/$TAG-memcheck-silu$v.log | head -4
  pack
done
for cfg in ${OFF_CFGS-}; do
  IFS=: read -r mb nt mf v <<< "$cfg"; v=${v:-3}
  name=OFF-128-b$mb-t$nt-m$mf-n${NREQ:-4096}-silu$v
  MIXSERVE_SILU_VARIANT=$v timeout ${LIMIT:-150} $B bench offline --input-len 128 --output-len 128 \
    --model synthetic:mixtral-8x7b --device cuda --quantization fp8 --kv-cache-dtype fp8 \
    --num-requests ${NREQ:-4096} --warmup 64 --max-batch $mb --max-num-batched-tokens $nt \
    --gpu-memory-fraction $mf --workload-id OFF-128 --out $R/$TAG-$name.json > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A1 "^run " $R/$TAG-$name.log | tail -1 | cut -c1-110
  grep -hiE "engine steps|kv cache|preempt" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | cut -c1-200 | head -3
  pack
done
