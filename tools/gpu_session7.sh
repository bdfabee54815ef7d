#!/usr/bin/env bash
# Session 7's GPU run (one H100): GPU tests (TESTS), OFF-128 on the full model at OFF_CFGS
# ("max_batch:max_num_batched_tokens:gpu_memory_fraction[:flags]", NREQ requests), then, with
# PROFILE=1, an ncu per-kernel breakdown (?layers=2, kernels serialized by the profiler, 2 timed
# steps) of a batch-1,536 decode step and an 8,192-token prefill step. Reports in
# $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s7}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
FP8="--device cuda --quantization fp8 --kv-cache-dtype fp8"
if [ -n "${TESTS:-}" ]; then
  timeout ${TEST_LIMIT:-200} $T --gtest_filter="$TESTS" > $R/$TAG-gpu-tests.log 2>&1; echo "tests rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|tests ran" $R/$TAG-gpu-tests.log | head -24
fi
off() {  # name, flags...
  local name=$1; shift
  timeout ${LIMIT:-150} $B bench offline --input-len 128 --out $R/$TAG-$name.json "$@" \
    > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A4 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -3 | cut -c1-130
  grep -hiE "engine steps|kv cache|preempt" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | cut -c1-220 | head -3
  tar czf $OUT/results.tgz -C $R .  # after each run: a run cut off by the limit keeps the rest
}
for cfg in ${OFF_CFGS-1536:8192:0.95}; do  # extra flags after the third colon, commas for spaces
  IFS=: read -r mb nt mf extra <<< "$cfg"
  off OFF-128-b$mb-t$nt-m$mf-n${NREQ:-3072}${extra:+-${extra//[-,]/}} --model synthetic:mixtral-8x7b \
    $FP8 --output-len 128 --num-requests ${NREQ:-3072} --warmup 64 --max-batch $mb \
    --max-num-batched-tokens $nt --gpu-memory-fraction $mf --workload-id OFF-128 ${extra//,/ }
done
if [ -n "${PROFILE:-}" ]; then
  M="synthetic:mixtral-8x7b?layers=2"
  for what in ${CASES:-decode1536 prefill8192}; do
    case $what in
      prefill8192) args="--prefill --batch 64 --context 128";;
      decode1536) args="--batch 1536 --context 192";;
    esac
    f=$R/$TAG-$what-ncu.csv
    MIXSERVE_GEMM_AUTOTUNE=0 timeout 150 ncu --csv --print-units base \
      --metrics gpu__time_duration.sum,dram__bytes.sum --clock-control none --profile-from-start off \
      $B bench-step --model "$M" $FP8 $args --iters 2 > $f 2>/dev/null
    echo "== $what (per step of 2 layers)"; python3 tools/ncu_summary.py $f 2 | head -${TOP:-22}
  done
fi
tar czf $OUT/results.tgz -C $R .
