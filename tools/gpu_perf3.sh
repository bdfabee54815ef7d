#!/usr/bin/env bash
# Attention unroll check (resources + ncu of the decode kernel at 1024 x 192, FP8 KV), the full
# decode step, then OFF-128 at several max-batch / token budgets (full synthetic Mixtral, FP8).
set -uo pipefail
B=.devcarry/bin/mixserve
M=synthetic:mixtral-8x7b; F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}
cuobjdump -res-usage $B 2>/dev/null | grep -A1 "attention_decode_kernel" | grep -oE "REG:[0-9]+|STACK:[0-9]+|LOCAL:[0-9]+" | paste - - - | sort | uniq -c | head
ncu --csv --print-units base --metrics gpu__time_duration.sum --clock-control none --profile-from-start off \
  -k regex:attention_decode $B bench-step --model "$M?layers=2" $F --batch 1024 --context 192 --iters 2 > $OUT/ncu_attn.csv 2>/dev/null
python3 tools/ncu_summary.py $OUT/ncu_attn.csv 2 | head -3
$B bench-step --model $M $F --batch 1024 --context 192 --iters 10 2>/dev/null | tee -a $OUT/steps.jsonl
run_off() {  # name, extra flags
  local name=$1; shift
  $B bench offline --model $M $F --input-len 128 --output-len 128 --num-requests 3072 --warmup 32 \
    --workload-id OFF-128 --out $OUT/$name "$@" > $OUT/$name.log 2>&1
  echo "$name $*"; grep -A1 "^run " $OUT/$name.log | tail -1
}
run_off off128-b1024-t8192 --max-batch 1024 --max-num-batched-tokens 8192
run_off off128-b1536-t8192 --max-batch 1536 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95
run_off off128-b1536-t16384 --max-batch 1536 --max-num-batched-tokens 16384 --gpu-memory-fraction 0.95
