#!/usr/bin/env bash
# Session 4's GPU run (one H100): the counted grouped FP8 MoE (large steps: batched GEMMs over
# G groups of the largest expert count, scales folded into SiLU·mul and the combine) against
# the per-expert lanes (MIXSERVE_FP8_COUNTED=0): correctness first, then step times and
# OFF-128. Reports in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-s4}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
M=synthetic:mixtral-8x7b
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
FP8="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
if [ -n "${TESTS:-}" ]; then
  timeout 240 $T --gtest_filter="$TESTS" > $R/$TAG-gpu-tests.log 2>&1; echo "tests rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|\[fp8 counted\]|counted, C" $R/$TAG-gpu-tests.log | head -24
fi
step() {  # label, flags... (the MoE count read-backs' share and the SM clock / power printed)
  local label=$1; shift
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader -lms 200 > $R/smi-$label.txt 2>/dev/null &
  local smi=$!
  printf "%-34s " "$label"; MIXSERVE_LOG=${STEP_LOG:-info} timeout 90 $B bench-step $FP8 --context ${CTX:-192} --iters 10 "$@" 2>$R/step-$label.err | tail -1 | grep -oE "step_ms_median\":[0-9.]+" | tr '\n' ' '
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  grep -oE "read-backs took .*" $R/step-$label.err | tr '\n' ' '
  sort -t, -k1 -n $R/smi-$label.txt | awk -F, '{c[NR]=$1; p[NR]=$2} END {if (NR) printf "SM MHz min/median %s/%s, power median %s\n", c[1], c[int((NR+1)/2)], p[int((NR+1)/2)]; else print ""}'
}
export MIXSERVE_SYNC_TIMING=1
for mode in ${STEP_MODES-0 1.25}; do
  export MIXSERVE_FP8_COUNTED=$mode
  for b in ${STEP_BATCHES:-256 1024 1536}; do step "decode-b$b-counted$mode" --batch $b; done
  CTX=128 step "prefill-8192-counted$mode" --prefill --batch 64
  CTX=128 step "prefill-2048-counted$mode" --prefill --batch 16
done
unset MIXSERVE_FP8_COUNTED MIXSERVE_SYNC_TIMING
off() {  # name, flags...
  local name=$1; shift
  timeout ${LIMIT:-150} $B bench offline --input-len 128 --out $R/$TAG-$name.json "$@" > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A4 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -3 | cut -c1-130
  grep -hE "engine steps" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | head -2
}
for cfg in ${OFF_CFGS-1536:8192}; do
  mb=${cfg%%:*}; nt=${cfg##*:}
  for mode in ${OFF_MODES:-1.25 0}; do
    MIXSERVE_FP8_COUNTED=$mode off OFF-128-b$mb-t$nt-counted$mode $FP8 --output-len 128 \
      --num-requests ${NREQ:-3072} --warmup 64 --max-batch $mb --max-num-batched-tokens $nt \
      --gpu-memory-fraction 0.95 --workload-id OFF-128
  done
done
grep -h "batched FP8 GEMM autotune" $R/step-*.err 2>/dev/null | sed "s/^\[[^]]*\] //" | sort | uniq | head -20
tar czf $OUT/results.tgz -C $R .
