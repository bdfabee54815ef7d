#!/usr/bin/env bash
# Session 3's closing GPU run on a two-GPU machine: every CUDA / dist test (NCCL included), the
# element-wise kernel benchmark, OFF-128 on one GPU (host share of the step in the log), and on
# two GPUs with MIXSERVE_COMM_TIMING=1 (the all-reduces' share of each eager step), then the
# ON-STREAM rates around the 16 ms budget on two GPUs; OFF-128 with both all-reduce dtypes
# (MIXSERVE_TP_REDUCE). Reports in $OUT/results.tgz.
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R; TAG=${TAG:-h100x2-s3}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
NCCL_DIR=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0] + "/lib")' 2>/dev/null)
export LD_LIBRARY_PATH=$NCCL_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
M=synthetic:mixtral-8x7b
FP8="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
off() {  # file, flags...
  local name=$1; shift
  timeout ${LIMIT:-150} $B bench offline --input-len 128 --out $R/$TAG-$name.json "$@" > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$?"; grep -A4 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -3 | cut -c1-130
  grep -hE "engine steps|all-reduces took" $R/$TAG-$name.log | sed 's/^\[[^]]*\] //' | head -4
}
timeout 300 $T --gtest_filter="${TESTS:-Cuda*:Dist*:TensorParallel*}" > $R/$TAG-gpu-tests.log 2>&1; echo "tests rc=$?"
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|comm timer" $R/$TAG-gpu-tests.log | head -12
if [ -n "${KERNELS:-}" ]; then
  CUDA_VISIBLE_DEVICES=0 timeout 60 $B bench-kernels $KERNELS --out $R/h100-bench-kernels-s3.json > $R/bench-kernels.log 2>&1
  echo "== bench-kernels rc=$?"; tail -25 $R/bench-kernels.log
fi
export CUDA_VISIBLE_DEVICES=0
if [ -n "${PROFILE:-}" ]; then  # where a batch-256 FP8 decode step goes (2 layers, ncu)
  echo "== decode attention registers / stack (count, REG, STACK)"
  cuobjdump -res-usage $B 2>/dev/null | grep -A1 "attention_decode_kernel" | grep -oE "REG:[0-9]+|STACK:[0-9]+" | paste - - | sort | uniq -c
  timeout 90 ncu --csv --print-units base --metrics gpu__time_duration.sum,dram__bytes.sum --clock-control none \
    --profile-from-start off $B bench-step --model "$M?layers=2" --device cuda --quantization fp8 \
    --kv-cache-dtype fp8 --batch 256 --context 192 --iters 2 > $R/h100-fp8-decode256-ncu.csv 2>/dev/null
  echo "== decode 256 x ctx 192, 2 layers, per step"; python3 tools/ncu_summary.py $R/h100-fp8-decode256-ncu.csv 2 | head -14
  # Decode attention at 1,024 x 193 keys (E4M3 cache; session 2: 0.666 ms per 2 layers).
  timeout 60 ncu --csv --print-units base --metrics gpu__time_duration.sum --clock-control none \
    --profile-from-start off -k regex:attention_decode $B bench-step --model "$M?layers=2" \
    --device cuda --quantization fp8 --kv-cache-dtype fp8 --batch 1024 --context 192 --iters 2 \
    > $R/h100-fp8-attn1024-ncu.csv 2>/dev/null
  echo "== decode attention 1024 x 193"; python3 tools/ncu_summary.py $R/h100-fp8-attn1024-ncu.csv 2 | head -3
  for b in 64 1024; do
    timeout 60 $B bench-step --model $M --device cuda --quantization fp8 --kv-cache-dtype fp8 \
      --batch $b --context 192 --iters 10 2>/dev/null | tail -1
  done
fi
off OFF-128-tp1 $FP8 --output-len 128 --num-requests 3072 --warmup 64 --max-batch 1536 \
  --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95 --workload-id OFF-128
unset CUDA_VISIBLE_DEVICES
export MIXSERVE_COMM_TIMING=1
for red in f32 bf16; do
  MIXSERVE_TP_REDUCE=$red off OFF-128-tp2-reduce-$red $FP8 -tp 2 --output-len 128 --num-requests 6144 \
    --warmup 64 --max-batch 3072 --max-num-batched-tokens 12288 --gpu-memory-fraction 0.95 --workload-id OFF-128
done
unset MIXSERVE_COMM_TIMING
if [ -n "${STREAM:-}" ]; then
  MIXSERVE_TP_REDUCE=${STREAM_REDUCE:-f32} $B serve $FP8 -tp 2 --port 8011 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.93 > $R/$TAG-serve.log 2>&1 &
  SRV=$!
  for i in $(seq 1 200); do grep -q "ready: serving" $R/$TAG-serve.log && break; sleep 1; done
  timeout 200 $B bench serve --base-url http://127.0.0.1:8011 --input-len 512 --output-len 256 \
    --num-requests 128 --request-rate $STREAM --warmup 8 --workload-id ON-STREAM \
    --device-name "2x $(head -1 $R/gpu.txt | cut -d, -f1)" --precision fp8 --tpot-budget-ms 16 \
    --out $R/$TAG-ON-STREAM-tp2-fine.json > $R/$TAG-ON-STREAM-tp2-fine.log 2>&1
  echo "== ON-STREAM tp2"; grep -A8 "^run " $R/$TAG-ON-STREAM-tp2-fine.log | grep -v "^\[" | head -8 | cut -c1-130
  grep -m1 "sweet" $R/$TAG-ON-STREAM-tp2-fine.log
  kill $SRV; wait $SRV 2>/dev/null
fi
tar czf $OUT/results.tgz -C $R .; rm -rf $R
