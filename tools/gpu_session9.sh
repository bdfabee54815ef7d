#!/usr/bin/env bash
# Session 9's GPU run (one H100 or H200): GPU tests (TESTS), compute-sanitizer memcheck of
# SANITIZE, then OFF-128 on the full model at OFF_CFGS entries
# "max_batch:max_num_batched_tokens:gpu_memory_fraction:tiers[:tier_w2[:min_gain[:cost_align]]]"
# (MIXSERVE_MOE_TIERS / MIXSERVE_MOE_TIER_W2 / MIXSERVE_MOE_TIER_GAIN: the counted MoE GEMMs
# cut into tiers of groups ordered by count, moe_padded_fp8.h; tiers "d": the defaults), NREQ
# requests each.
# Reports in $OUT/results.tgz, written again after each step so a cut-off run keeps the rest.
set -uo pipefail
TAG=${TAG:-h100-s9}
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/gpu.txt
gpu_tests "^\[fp8 (counted|grouped)\].*tiers"
gpu_memcheck
for cfg in ${OFF_CFGS-}; do
  IFS=: read -r mb nt mf tiers w2 gain ca <<< "$cfg"; tiers=${tiers:-1}; w2=${w2:-1}; gain=${gain:-0.02}
  ca=${ca:-0}; name=OFF-128-b$mb-t$nt-m$mf-n${NREQ:-6144}-tiers$tiers-w2$w2-g$gain-a$ca
  envs=(MIXSERVE_MOE_TIERS=$tiers MIXSERVE_MOE_TIER_W2=$w2 MIXSERVE_MOE_TIER_GAIN=$gain MIXSERVE_MOE_TIER_ALIGN=$ca)
  [ "$tiers" = d ] && envs=(MIXSERVE_NONE=1)  # d: the binary's defaults
  env "${envs[@]}" timeout ${LIMIT:-170} $B bench offline --input-len 128 --output-len 128 \
    --model synthetic:mixtral-8x7b --device cuda --quantization fp8 --kv-cache-dtype fp8 \
    --num-requests ${NREQ:-6144} --warmup 64 --max-batch $mb --max-num-batched-tokens $nt \
    --gpu-memory-fraction $mf --workload-id OFF-128 --out $R/$TAG-$name.json > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A1 "^run " $R/$TAG-$name.log | tail -1 | cut -c1-110
  grep -hiE "engine steps|preempt|padding" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | cut -c1-200 | head -3
  pack
done
