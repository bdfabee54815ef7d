#!/usr/bin/env bash
# Session 10's GPU run (one H100 or H200): GPU tests (TESTS), compute-sanitizer memcheck of
# SANITIZE, then OFF-128 on the full model for each OFF_CFGS entry
# "name:max_batch:max_num_batched_tokens:gpu_memory_fraction[:VAR=value,VAR=value...]"
# (environment settings of that run, e.g. MIXSERVE_MOE_TIER_STREAMS=0; none: the defaults),
# NREQ requests each. Reports in $OUT/results.tgz, written again after each step so a cut-off
# run keeps the rest; a short table at the end.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s10}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/$TAG-gpu.txt
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
pack() { tar czf $OUT/results.tgz -C $R .; }
if [ -n "${TESTS-}" ]; then
  timeout ${TEST_LIMIT:-240} $T --gtest_filter="$TESTS" > $R/$TAG-gpu-tests.log 2>&1
  echo "tests rc=$?"; grep -E "^\[  FAILED|^\[  PASSED|tests ran" $R/$TAG-gpu-tests.log | head -12
  pack
fi
if [ -n "${SANITIZE-}" ]; then
  timeout ${SAN_LIMIT:-240} compute-sanitizer --tool memcheck $T --gtest_filter="$SANITIZE" \
    > $R/$TAG-memcheck.log 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" $R/$TAG-memcheck.log | head -4
  pack
fi
table=""
for cfg in ${OFF_CFGS-}; do
  IFS=: read -r name mb nt mf envs <<< "$cfg"
  IFS=, read -r -a envv <<< "${envs:-MIXSERVE_NONE=1}"
  f=OFF-128-$name-b$mb-t$nt-m$mf-n${NREQ:-6144}
  env "${envv[@]}" timeout ${LIMIT:-170} $B bench offline --input-len 128 --output-len 128 \
    --model synthetic:mixtral-8x7b --device cuda --quantization fp8 --kv-cache-dtype fp8 \
    --num-requests ${NREQ:-6144} --warmup 64 --max-batch $mb --max-num-batched-tokens $nt \
    --gpu-memory-fraction $mf --workload-id OFF-128 --out $R/$TAG-$f.json > $R/$TAG-$f.log 2>&1
  rc=$?
  line=$(grep -A1 "^run " $R/$TAG-$f.log | tail -1)
  steps=$(grep -hoE "[0-9]+ engine steps, [0-9.]+ ms each" $R/$TAG-$f.log | head -1)
  table+=$(printf '\n%-28s rc=%s out_tok/s=%s  %s' "$name" "$rc" "$(echo "$line" | awk '{print $5}')" "$steps")
  pack
done
[ -n "$table" ] && echo "== OFF-128 ($TAG)$table"
