#!/usr/bin/env bash
# Where the counted grouped FP8 MoE's time goes against the per-expert lanes (ncu, ?layers=2,
# kernels serialized by the profiler, 2 timed steps): an 8,192-token prefill step and a
# batch-1,024 decode step. Summaries per kernel family; CSVs in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R
M="synthetic:mixtral-8x7b?layers=2"
FP8="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
for mode in ${MODES:-0 1.25}; do
  for what in ${CASES:-prefill8192 decode1024}; do
    case $what in
      prefill8192) args="--prefill --batch 64 --context 128";;
      decode1024) args="--batch 1024 --context 192";;
    esac
    f=$R/h100-s4-$what-counted$mode-ncu.csv
    MIXSERVE_FP8_COUNTED=$mode MIXSERVE_GEMM_AUTOTUNE=0 timeout 120 ncu --csv --print-units base \
      --metrics gpu__time_duration.sum,dram__bytes.sum --clock-control none --profile-from-start off \
      $B bench-step $FP8 $args --iters 2 > $f 2>/dev/null
    echo "== $what counted=$mode (per step of 2 layers)"; python3 tools/ncu_summary.py $f 2 | head -${TOP:-16}
  done
done
tar czf $OUT/results.tgz -C $R .
