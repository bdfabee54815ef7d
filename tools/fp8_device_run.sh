#!/usr/bin/env bash
# FP8 helper's GPU run: correctness tests, then bench-step, ncu kernel times and bench offline.
# Usage: copy into a device bundle (tools/device_bundle.sh's .devcarry/ plus assets/) as
# run.sh; on the GPU machine: FILTER=gtest-filter bash BUNDLE/run.sh [tests|perf|all].
set -u
here=$(cd "$(dirname "$0")" && pwd)
export MIXSERVE_ASSETS=$here/assets LD_LIBRARY_PATH=$here/bin/lib
bin=$here/bin
export PATH=$PATH:/usr/local/cuda/bin
what=${1:-all}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt 2>&1
if [ "$what" != perf ]; then
  timeout 240 $bin/mixserve_tests --gtest_filter="${FILTER:-CudaFp8*:Fp8*}" > $OUT/tests.txt 2>&1
  echo "tests rc=$?" >> $OUT/tests.txt
  grep -E "fp8 e2e|fp8 gemm\]|FAILED|PASSED|rc=" $OUT/tests.txt | tail -40
fi
if [ "$what" != tests ]; then
  s=$OUT/step.txt
  for b in 1 64 256; do
    echo "== fp8 32 layers batch $b" >> $s
    timeout 120 $bin/mixserve bench-step --model 'synthetic:mixtral-8x7b' --device cuda \
      --quantization fp8 --kv-cache-dtype fp8 --batch $b >> $s 2>&1
  done
  for q in "--quantization fp8 --kv-cache-dtype fp8" ""; do
    for b in 1 64 256; do
      echo "== layers=8 [$q] batch $b" >> $s
      timeout 60 $bin/mixserve bench-step --model 'synthetic:mixtral-8x7b?layers=8' --device cuda \
        $q --batch $b >> $s 2>&1
    done
  done
  grep -v "^\[" $s | tail -40
  if command -v ncu > /dev/null; then
    for q in "--quantization fp8 --kv-cache-dtype fp8" ""; do
      for b in 1 64; do
        echo "== ncu layers=2 [$q] batch $b (2 steps): kernel, launches, total us" >> $OUT/ncu.txt
        timeout 90 ncu --profile-from-start off --clock-control none --csv --print-units base \
          --print-kernel-base function --metrics gpu__time_duration.sum \
          $bin/mixserve bench-step --model 'synthetic:mixtral-8x7b?layers=2' --device cuda $q \
          --batch $b --iters 2 2>/dev/null | grep gpu__time_duration | \
          awk -F'","' '{n[$5]++; t[$5]+=$NF} END {for (k in n) printf "%-60s %4d %10.1f\n", substr(k,1,60), n[k], t[k]/1000}' \
          | sort -k3 -n -r >> $OUT/ncu.txt
      done
    done
    cat $OUT/ncu.txt | head -70
  fi
  mkdir -p /tmp/off
  timeout 200 $bin/mixserve bench offline --model synthetic:mixtral-8x7b --device cuda \
    --quantization fp8 --kv-cache-dtype fp8 --input-len 128 --output-len 128 \
    --num-requests ${NREQ:-1024} --max-batch 1024 --workload-id OFF-128 \
    --out /tmp/off/off128.json > $OUT/offline.txt 2>&1
  echo "offline rc=$?" >> $OUT/offline.txt
  cp /tmp/off/off128.json $OUT/
  tail -5 $OUT/offline.txt
fi
