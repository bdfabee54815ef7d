#!/usr/bin/env bash
# Session 10's GPU run (one H100 or H200): GPU tests (TESTS), compute-sanitizer memcheck of
# SANITIZE, then OFF-128 on the full model for each OFF_CFGS entry
# "name:max_batch:max_num_batched_tokens:gpu_memory_fraction[:VAR=value,VAR=value...[:requests]]"
# (environment settings of that run, e.g. MIXSERVE_MOE_TIER_STREAMS=0; "-" or none: the
# defaults), NREQ requests each unless the entry names its own count; with OLD_BIN set, entries
# whose name starts with "old" run that binary instead of the bundle's. Reports in
# $OUT/results.tgz, written again after each step so a cut-off run keeps the rest; a short
# table at the end.
set -uo pipefail
TAG=${TAG:-h100-s10}
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/$TAG-gpu.txt
gpu_tests
gpu_memcheck
table=""
for cfg in ${OFF_CFGS-}; do
  IFS=: read -r name mb nt mf envs nreq <<< "$cfg"
  envv=()
  [ "${envs:--}" = "-" ] || IFS=, read -r -a envv <<< "$envs"
  nreq=${nreq:-${NREQ:-6144}}
  f=OFF-128-$name-b$mb-t$nt-m$mf-n$nreq
  bin=$B  # OLD_BIN set (tools/gpu_session13.sh): entries named old* run that binary
  case $name in old*) bin=${OLD_BIN:-$B};; esac
  env "${envv[@]}" timeout ${LIMIT:-170} $bin bench offline --input-len 128 --output-len 128 \
    --model synthetic:mixtral-8x7b --device cuda --quantization fp8 --kv-cache-dtype fp8 \
    --num-requests $nreq --warmup 64 --max-batch $mb --max-num-batched-tokens $nt \
    --gpu-memory-fraction $mf --workload-id OFF-128 --out $R/$TAG-$f.json > $R/$TAG-$f.log 2>&1
  rc=$?
  line=$(grep -A1 "^run " $R/$TAG-$f.log | tail -1)
  steps=$(grep -hoE "[0-9]+ engine steps, [0-9.]+ ms each" $R/$TAG-$f.log | head -1)
  table+=$(printf '\n%-28s rc=%s out_tok/s=%s  %s' "$name" "$rc" "$(echo "$line" | awk '{print $5}')" "$steps")
  pack
done
if [ -n "$table" ]; then echo "== OFF-128 ($TAG)$table"; fi
