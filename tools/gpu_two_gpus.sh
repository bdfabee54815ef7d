#!/usr/bin/env bash
# Issue 9 on a two-GPU machine (nvidia-h100-x2): NCCL found, every CUDA / dist test (the NCCL
# ones included), TP=2 / EP=2 greedy across two GPUs from the CLI (threads and two processes),
# then FP8 OFF-128 on two GPUs and on one (scaling). Stage 2 (PART=2): OFF-BS, LAT-1 and
# ON-STREAM on two GPUs, BF16 full model on two GPUs. Reports in $OUT/results-$PART.tgz.
# Usage (GPU machine, repo root, bundle in .devcarry/): OUT=... PART=1|2 tools/gpu_two_gpus.sh
set -uo pipefail
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
PART=${PART:-1}; OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R
TAG=${TAG:-h100x2}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
NCCL_DIR=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0] + "/lib")' 2>/dev/null)
[ -f "$NCCL_DIR/libnccl.so.2" ] || NCCL_DIR=$(dirname "$(find / -name libnccl.so.2 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$NCCL_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "NCCL: $NCCL_DIR"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $R/gpu.txt
M=synthetic:mixtral-8x7b
FP8="--model $M --device cuda --quantization fp8 --kv-cache-dtype fp8"
off() {  # file, flags...
  local name=$1; shift
  timeout ${LIMIT:-170} $B bench offline --input-len 128 --out $R/$TAG-$name.json "$@" > $R/$TAG-$name.log 2>&1
  echo "== $name: rc=$? $*" | cut -c1-220; grep -A12 "^run " $R/$TAG-$name.log | grep -v "^\[" | head -7
  grep -m3 -iE "error|fail" $R/$TAG-$name.log
}
if [ "$PART" = 1 ]; then
  nvidia-smi topo -m > $R/topo.txt 2>&1; head -4 $R/topo.txt
  timeout 300 $T --gtest_filter="${TESTS:-Cuda*:Dist*:TensorParallel*}" > $R/tests.log 2>&1; echo "tests rc=$?"
  grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|^\[       OK \].*(Nccl|TwoGpus)" $R/tests.log | head -12
  grep -E "2 GPUs, NCCL" $R/tests.log | head -24
  # The CLI: greedy tokens of a tiny checkpoint, TP=1 vs TP=2 / EP=2 on two GPUs (threads), and
  # TP=2 as two processes (--nnodes 2, one GPU each).
  $B make-model --preset tiny-e8 --out /tmp/tiny > /dev/null
  G="generate --model /tmp/tiny --device cuda --dtype fp16 --json --prompt abcdefgh --max-tokens 32 --ignore-eos"
  tok() { python3 -c 'import json,sys; print(json.load(sys.stdin)["token_ids"])'; }
  REF=$($B $G 2>$R/gen1.err | tok); echo "TP=1:        $REF"
  for extra in "--tensor-parallel 2" "--tensor-parallel 2 --expert-parallel"; do
    GOT=$($B $G $extra 2>$R/gen2.err | tok); [ "$GOT" = "$REF" ] && s=same || s=DIFF; echo "$extra: $s $GOT"
  done
  L="--tensor-parallel 2 --nnodes 2 --master-addr 127.0.0.1 --master-port 29517"
  CUDA_VISIBLE_DEVICES=1 $B $G $L --node-rank 1 > $R/w1.out 2> $R/w1.err &
  GOT=$(CUDA_VISIBLE_DEVICES=0 timeout 120 $B $G $L --node-rank 0 2> $R/w0.err | tok); wait
  [ "$GOT" = "$REF" ] && s=same || s=DIFF; echo "two processes --nnodes 2: $s $GOT"
  grep -h -iE "nccl|error" $R/gen2.err $R/w0.err | head -4
  # FP8 OFF-128: two GPUs (TP=2, EP=2), then one GPU on the same machine.
  off OFF-128-tp2-b2048 $FP8 -tp 2 --output-len 128 --num-requests 4096 --warmup 64 --max-batch 2048 \
    --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95 --workload-id OFF-128
  off OFF-128-tp2-b3072 $FP8 -tp 2 --output-len 128 --num-requests 6144 --warmup 64 --max-batch 3072 \
    --max-num-batched-tokens 12288 --gpu-memory-fraction 0.95 --workload-id OFF-128
  off OFF-128-tp1 $FP8 --output-len 128 --num-requests 3072 --warmup 64 --max-batch 1536 \
    --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95 --workload-id OFF-128
elif [ "$PART" = 2 ]; then
  off OFF-128-ep2-b2048 $FP8 -tp 2 --expert-parallel --output-len 128 --num-requests 4096 --warmup 64 \
    --max-batch 2048 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95 --workload-id OFF-128
  off LAT-1-tp2 $FP8 -tp 2 --output-len 128 --num-requests 8 --warmup 1 --max-batch 1 --workload-id LAT-1
  off OFF-BS-tp2 $FP8 -tp 2 --output-len 128 --num-requests 1024 --warmup 32 --max-batch 8,64,256,1024 \
    --max-num-batched-tokens 8192 --workload-id OFF-BS
  $B serve $FP8 -tp 2 --port 8011 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.93 > $R/$TAG-serve.log 2>&1 &
  SRV=$!
  for i in $(seq 1 150); do curl -sf http://127.0.0.1:8011/health > /dev/null && break; sleep 1; done
  timeout 200 $B bench serve --base-url http://127.0.0.1:8011 --input-len 512 --output-len 256 \
    --num-requests 128 --request-rate 4,16,32,inf --warmup 8 --workload-id ON-STREAM \
    --device-name "2x $(head -1 $R/gpu.txt | cut -d, -f1)" --precision fp8 --tpot-budget-ms 16 \
    --out $R/$TAG-ON-STREAM-tp2.json > $R/$TAG-ON-STREAM-tp2.log 2>&1
  echo "== ON-STREAM tp2"; grep -A8 "^run " $R/$TAG-ON-STREAM-tp2.log | grep -v "^\[" | head -8; grep -m1 "sweet" $R/$TAG-ON-STREAM-tp2.log
  kill $SRV; wait $SRV 2>/dev/null
  BF="--model $M --device cuda --dtype bf16"
  off OFF-128-bf16-tp2 $BF -tp 2 --output-len 128 --num-requests 2048 --warmup 64 --max-batch 1024 \
    --max-num-batched-tokens 8192 --gpu-memory-fraction 0.95 --workload-id OFF-128
  off LAT-1-bf16-tp2 $BF -tp 2 --output-len 128 --num-requests 8 --warmup 1 --max-batch 1 --workload-id LAT-1
else
  off OFF-BS-8-tp2 $FP8 -tp 2 --output-len 128 --num-requests 64 --warmup 8 --max-batch 8 --workload-id OFF-BS
  off OFF-BS-64-1024-tp2 $FP8 -tp 2 --output-len 128 --num-requests 1024 --warmup 32 --max-batch 64,256,1024 \
    --max-num-batched-tokens 8192 --workload-id OFF-BS
  $B serve $FP8 -tp 2 --port 8011 --max-num-batched-tokens 8192 --gpu-memory-fraction 0.93 > $R/$TAG-serve.log 2>&1 &
  SRV=$!
  for i in $(seq 1 200); do grep -q "ready: serving" $R/$TAG-serve.log && break; sleep 1; done
  timeout 240 $B bench serve --base-url http://127.0.0.1:8011 --input-len 512 --output-len 256 \
    --num-requests 128 --request-rate 4,16,32,inf --warmup 8 --workload-id ON-STREAM \
    --device-name "2x $(head -1 $R/gpu.txt | cut -d, -f1)" --precision fp8 --tpot-budget-ms 16 \
    --out $R/$TAG-ON-STREAM-tp2.json > $R/$TAG-ON-STREAM-tp2.log 2>&1
  echo "== ON-STREAM tp2"; grep -A8 "^run " $R/$TAG-ON-STREAM-tp2.log | grep -v "^\[" | head -8; grep -m1 "sweet" $R/$TAG-ON-STREAM-tp2.log
  kill $SRV; wait $SRV 2>/dev/null
fi
tar czf $OUT/results-$PART.tgz -C $R .
