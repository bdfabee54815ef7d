#!/usr/bin/env bash
# One-pass FP8 norm / quantize kernels: tests, decode-attention register report with names,
# step times (batch 1 / 64 / 1024, 8,192-token prefill), then ON-STREAM again (token-id chunks).
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
M=synthetic:mixtral-8x7b; F="--device cuda --quantization fp8 --kv-cache-dtype fp8"
OUT=${OUT:-/tmp/out}; mkdir -p $OUT/r
cuobjdump -res-usage $B 2>/dev/null | grep -A1 "attention_decode_kernel" | paste - - | \
  sed -E 's/.*attention_decode_kernel(I[^ ]*).*(REG:[0-9]+).*(STACK:[0-9]+).*/\1 \2 \3/' | cut -c1-140 | sort -u | head -12
$T --gtest_filter='CudaFp8*:CudaAttention*:CudaMoe*:CudaGraph*:CudaOps*' > $OUT/r/tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED" $OUT/r/tests.log | head -5
for b in 1 64 1024; do $B bench-step --model $M $F --batch $b --context 192 --iters 10 2>/dev/null; done
$B bench-step --model $M $F --batch 64 --context 128 --prefill --iters 5 2>/dev/null
R=$OUT/r; TAG=h100-fp8-fp8kv-s2
$B serve --model $M $F --port 8011 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.93 > $R/$TAG-serve.log 2>&1 &
SRV=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:8011/v1/models > /dev/null && break; sleep 1; done
timeout 200 $B bench serve --base-url http://127.0.0.1:8011 --input-len 512 --output-len 256 \
  --num-requests 128 --request-rate 2,4,8,16,inf --warmup 8 --workload-id ON-STREAM \
  --device-name "NVIDIA H100 80GB HBM3" --precision fp8 --tpot-budget-ms 25 \
  --out $R/$TAG-ON-STREAM.json > $R/$TAG-ON-STREAM.log 2>&1
grep -A8 "^run " $R/$TAG-ON-STREAM.log | grep -v "^\[" | head -8; grep "sweet" $R/$TAG-ON-STREAM.log
kill $SRV; wait $SRV 2>/dev/null
tar czf $OUT/results.tgz -C $R .; rm -rf $R
