#!/usr/bin/env bash
# Session 6's GPU run (one H100): A/B of the deferred MoE combine (MIXSERVE_FP8_FUSED_COMBINE)
# and the bulk-copy SiLU·mul (MIXSERVE_SILU_BULK) one at a time, repeated in alternating order
# (the card is power-capped and drifts with temperature), on STEP_MODEL; then OFF-128 on the
# full model at OFF_CFGS ("max_batch:max_num_batched_tokens:gpu_memory_fraction[:flags]").
# Reports in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s6}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
FP8="--device cuda --quantization fp8 --kv-cache-dtype fp8"
if [ -n "${TESTS:-}" ]; then
  timeout ${TEST_LIMIT:-200} $T --gtest_filter="$TESTS" > $R/$TAG-gpu-tests.log 2>&1; echo "tests rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|tests ran" $R/$TAG-gpu-tests.log | head -24
fi
SM=${STEP_MODEL-synthetic:mixtral-8x7b?layers=8}
step() {  # label, flags...
  local label=$1; shift
  printf "%-34s " "$label"
  timeout 90 $B bench-step --model "$SM" $FP8 --context ${CTX:-192} --iters ${ITERS:-20} "$@" \
    2>$R/step-$label.err | tail -1 | tee -a $R/$TAG-step.jsonl | grep -oE "step_ms_median\":[0-9.]+"
}
if [ -n "$SM" ]; then
  for rep in ${REPS-1 2}; do
    modes=${MODES:-"00 10 01 11"}; [ $rep = 2 ] && modes=$(echo $modes | tr ' ' '\n' | tac | tr '\n' ' ')
    for m in $modes; do
      export MIXSERVE_FP8_FUSED_COMBINE=${m:0:1} MIXSERVE_SILU_BULK=${m:1:1}
      step "decode-b1536-c${m:0:1}s${m:1:1}-r$rep" --batch 1536
      CTX=128 step "prefill-8192-c${m:0:1}s${m:1:1}-r$rep" --prefill --batch 64
    done
  done
  unset MIXSERVE_FP8_FUSED_COMBINE MIXSERVE_SILU_BULK
fi
off() {  # name, env assignments (comma-separated, may be empty), flags...
  local name=$1 envs=$2; shift 2
  env ${envs//,/ } timeout ${LIMIT:-150} $B bench offline --input-len 128 --out $R/$TAG-$name.json "$@" \
    > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A4 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -3 | cut -c1-130
  grep -hiE "engine steps|kv cache|kv pool" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | head -3
}
for cfg in ${OFF_CFGS-1536:8192:0.95}; do  # extra flags after the third colon, commas for spaces
  IFS=: read -r mb nt mf extra <<< "$cfg"
  off OFF-128-b$mb-t$nt-m$mf${extra:+-${extra//[-,]/}} "" --model synthetic:mixtral-8x7b $FP8 \
    --output-len 128 --num-requests ${NREQ:-3072} --warmup 64 --max-batch $mb \
    --max-num-batched-tokens $nt --gpu-memory-fraction $mf --workload-id OFF-128 ${extra//,/ }
done
tar czf $OUT/results.tgz -C $R .
