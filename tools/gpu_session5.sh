#!/usr/bin/env bash
# Session 5's GPU run (one H100): the MoE combine deferred into the next norm
# (MIXSERVE_FP8_FUSED_COMBINE) and the bulk-copy SiLU·mul (MIXSERVE_SILU_BULK), each against
# its old path: GPU tests and a compute-sanitizer pass first, then step times (both off / both
# on), then OFF-128 at the token budgets in OFF_CFGS ("max_batch:max_num_batched_tokens").
# Reports in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s5}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
M=synthetic:mixtral-8x7b
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
FP8="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
if [ -n "${TESTS:-}" ]; then
  timeout ${TEST_LIMIT:-200} $T --gtest_filter="$TESTS" > $R/$TAG-gpu-tests.log 2>&1; echo "tests rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|tests ran" $R/$TAG-gpu-tests.log | head -24
fi
if [ -n "${SANITIZE:-}" ]; then
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 7 $T --gtest_filter="$SANITIZE" \
    > $R/$TAG-memcheck.log 2>&1; echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" $R/$TAG-memcheck.log | head -5
fi
step() {  # label, flags...
  local label=$1; shift
  printf "%-30s " "$label"; timeout 90 $B bench-step $FP8 --context ${CTX:-192} --iters 10 "$@" 2>$R/step-$label.err | tail -1 | grep -oE "step_ms_median\":[0-9.]+" | tr '\n' ' '; echo
}
for mode in ${STEP_MODES-0 1}; do
  export MIXSERVE_FP8_FUSED_COMBINE=$mode MIXSERVE_SILU_BULK=$mode
  for b in ${STEP_BATCHES:-1536}; do step "decode-b$b-new$mode" --batch $b; done
  CTX=128 step "prefill-8192-new$mode" --prefill --batch 64
done
unset MIXSERVE_FP8_FUSED_COMBINE MIXSERVE_SILU_BULK
off() {  # name, flags...
  local name=$1; shift
  timeout ${LIMIT:-150} $B bench offline --input-len 128 --out $R/$TAG-$name.json "$@" > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A4 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -3 | cut -c1-130
  grep -hE "engine steps" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | head -2
}
for cfg in ${OFF_CFGS-1536:8192}; do
  mb=${cfg%%:*}; nt=${cfg##*:}
  off OFF-128-b$mb-t$nt $FP8 --output-len 128 --num-requests ${NREQ:-3072} --warmup 64 \
    --max-batch $mb --max-num-batched-tokens $nt --gpu-memory-fraction 0.95 --workload-id OFF-128
done
tar czf $OUT/results.tgz -C $R .
