#!/usr/bin/env bash
# The standard workloads of shared PERF.md on one GPU, full synthetic Mixtral 8x7B in FP8
# (W8A8 + FP8 KV cache): OFF-128, LAT-1, OFF-BS, OFF-2K (one KV-limited wave) and ON-STREAM
# (server + Poisson rate sweep). Reports land in $OUT/r (packed as $OUT/results.tgz).
# Usage (GPU machine, repository root, bundle in .devcarry/): OUT=... tools/gpu_standard_fp8.sh [tag]
# WORKLOADS (default "OFF-128 LAT-1 OFF-BS OFF-2K ON-STREAM") picks some; RATES / BUDGET_MS /
# BS_REQUESTS set ON-STREAM's offered rates, its TPOT budget (25 ms: one H100 cannot meet the
# post's two-GPU 16 ms, every decode step of 8+ tokens reads all the weights) and OFF-BS
# 64-1024's request count.
set -uo pipefail
B=${B:-.devcarry/bin/mixserve}
TAG=${1:-h100-fp8-fp8kv}
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R
M=synthetic:mixtral-8x7b
F="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
W=" ${WORKLOADS:-OFF-128 LAT-1 OFF-BS OFF-2K ON-STREAM} "
want() { [[ "$W" == *" $1 "* ]]; }
off() {  # id, file, flags...
  local id=$1 name=$2; shift 2
  timeout ${LIMIT:-200} $B bench offline $F --input-len 128 --workload-id $id --out $R/$TAG-$name.json "$@" \
    > $R/$TAG-$name.log 2>&1
  echo "== $id ($name): $*"; grep -A20 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -8
}
# OFF-128 at session 8's best H100 settings (docs/perf/NOTES.md); sessions 2-6 ran 3,072
# requests with 8,192-token steps.
want OFF-128 && off OFF-128 OFF-128 --output-len 128 --num-requests 6144 --warmup 64 \
  --max-batch 1536 --max-num-batched-tokens 16384 --gpu-memory-fraction 0.95
want LAT-1 && off LAT-1 LAT-1 --output-len 128 --num-requests 8 --warmup 1 --max-batch 1
want OFF-BS && off OFF-BS OFF-BS-8 --output-len 128 --num-requests 64 --warmup 8 --max-batch 8
want OFF-BS && off OFF-BS OFF-BS-64-1024 --output-len 128 --num-requests ${BS_REQUESTS:-1024} \
  --warmup 32 --max-batch 64,256,1024 --max-num-batched-tokens 8192
want OFF-2K && off OFF-2K OFF-2K --output-len 2048 --num-requests 192 --warmup 0 --max-batch 192 \
  --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95
if want ON-STREAM; then  # 512 in / 256 out, Poisson arrivals, rate sweep against the server
  $B serve $F --port 8011 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.93 > $R/$TAG-serve.log 2>&1 &
  SRV=$!
  for i in $(seq 1 180); do grep -q "ready: serving" $R/$TAG-serve.log && break; sleep 1; done
  timeout 260 $B bench serve --base-url http://127.0.0.1:8011 --input-len 512 --output-len 256 \
    --num-requests 128 --request-rate ${RATES:-4,8,12,16,24,32,inf} --warmup 8 --workload-id ON-STREAM \
    --device-name "$(head -1 $R/gpu.txt | cut -d, -f1)" --precision fp8 \
    --tpot-budget-ms ${BUDGET_MS:-25} --out $R/$TAG-ON-STREAM.json > $R/$TAG-ON-STREAM.log 2>&1
  echo "== ON-STREAM"; grep -A8 "^run \|rate" $R/$TAG-ON-STREAM.log | grep -v "^\[" | head -10
  grep -m2 -i "sweet\|budget" $R/$TAG-ON-STREAM.log
  kill $SRV; wait $SRV 2>/dev/null
fi
tar czf $OUT/results.tgz -C $R .
