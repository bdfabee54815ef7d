#!/usr/bin/env bash
# End-of-session GPU check at the final commit: every CUDA / dist test, then OFF-128, LAT-1 and
# ON-STREAM (full synthetic Mixtral 8x7B, FP8 + FP8 KV). Reports packed in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
M=synthetic:mixtral-8x7b; F="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100-fp8-fp8kv-s2final}
$T --gtest_filter="${TESTS:-Cuda*:Dist*:TensorParallel*}" > $R/tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED" $R/tests.log | head -6
off() {
  local id=$1; shift
  timeout 200 $B bench offline $F --input-len 128 --workload-id $id --out $R/$TAG-$id.json "$@" > $R/$TAG-$id.log 2>&1
  echo "== $id: $*"; grep -A3 "^run " $R/$TAG-$id.log | grep -v "^\[" | head -3
}
off OFF-128 --output-len 128 --num-requests 3072 --warmup 64 --max-batch 1536 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95
off LAT-1 --output-len 128 --num-requests 8 --warmup 1 --max-batch 1
$B serve $F --port 8011 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.93 > $R/$TAG-serve.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
timeout 220 $B bench serve --base-url http://127.0.0.1:8011 --input-len 512 --output-len 256 \
  --num-requests 128 --request-rate 2,4,8,16,inf --warmup 8 --workload-id ON-STREAM \
  --device-name "NVIDIA H100 80GB HBM3" --precision fp8 --tpot-budget-ms 25 \
  --out $R/$TAG-ON-STREAM.json > $R/$TAG-ON-STREAM.log 2>&1
echo "== ON-STREAM"; grep -A8 "^run " $R/$TAG-ON-STREAM.log | grep -v "^\[" | head -8; grep -m1 "sweet" $R/$TAG-ON-STREAM.log
kill $SRV; wait $SRV 2>/dev/null
tar czf $OUT/results.tgz -C $R .; rm -rf $R
