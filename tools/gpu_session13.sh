#!/usr/bin/env bash
# Session 13's GPU run (one H100): GPU tests (TESTS), the decode-attention tests again with the
# block-table window (WTESTS, run with MIXSERVE_DECODE_TABLE_WINDOW=1), compute-sanitizer memcheck
# (SANITIZE), then with ATTN=1 the decode-attention layout experiment: `bench attention` at
# batch 1,536 x 193 keys (E4M3 cache) with 8 KV heads (the cache's slot-major rows: a warp reads
# 128 B of every 1 KB slot row) and with 1 KV head at 8x the sequences (same bytes and warps, a
# block's 16 keys of one head contiguous: what a head-major cache would give), each with the
# table window off and on, the whole decode set with the window on (checked against the generic
# kernel), and an ncu profile of the planned kernel for both layouts (NCU=1). Then OFF-128 for
# each OFF_CFGS entry (as tools/gpu_session10.sh). Reports in $OUT/results.tgz; a short table at
# the end. First run:
#   TAG=h100-s13a TESTS='CudaMoePaddedFp8.Pretune*:CudaBackend*:CudaGraph*' \
#   WTESTS='CudaAttention*' ATTN=1 NCU=1 LIMIT=110 \
#   OFF_CFGS='def:1536:16384:0.95 win:1536:16384:0.95:MIXSERVE_DECODE_TABLE_WINDOW=1' \
#   tools/gpu_session13.sh
set -uo pipefail
TAG=${TAG:-h100-s13}
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/$TAG-gpu.txt
gpu_tests
if [ -n "${WTESTS-}" ]; then
  MIXSERVE_DECODE_TABLE_WINDOW=1 timeout ${TEST_LIMIT:-240} $T --gtest_filter="$WTESTS" \
    > $R/$TAG-gpu-tests-window.log 2>&1
  echo "window tests rc=$?"; grep -E "^\[  FAILED|^\[  PASSED|tests ran" $R/$TAG-gpu-tests-window.log | head -8
  pack
fi
gpu_memcheck
atable=""
if [ -n "${ATTN-}" ]; then
  for kvh in 8 1; do
    n=$((1536 * 8 / kvh))
    for w in 0 1; do
      f=$R/$TAG-attn-kvh$kvh-w$w
      MIXSERVE_DECODE_TABLE_WINDOW=$w timeout 120 $B bench attention --dtype bf16 --kv fp8 \
        --kv-heads $kvh --decode ${n}x193 --cases "${n}x193" --iters 50 --json $f.json > $f.log 2>&1
      echo "== bench attention kvh=$kvh window=$w rc=$?"; grep -E "decode|FAIL" $f.log | head -4
      atable+=$(printf '\n%-8s kvh=%s window=%s  %s' "${n}x193" $kvh $w "$(grep -m1 ' fast' $f.log | awk '{for(i=1;i<=NF;i++) if($i=="us"||$i=="TB/s") printf "%s %s  ", $(i-1), $i}')")
    done
  done
  f=$R/$TAG-attn-decode-w1
  MIXSERVE_DECODE_TABLE_WINDOW=1 timeout 120 $B bench attention --dtype bf16 --kv fp8 \
    --cases decode --iters 30 --json $f.json > $f.log 2>&1
  echo "== bench attention decode set, window=1, E4M3 rc=$?"; grep -E "fast|FAIL" $f.log
  f=$R/$TAG-attn-decode-w1-bf16
  MIXSERVE_DECODE_TABLE_WINDOW=1 timeout 120 $B bench attention --dtype bf16 \
    --cases decode --iters 30 --json $f.json > $f.log 2>&1
  echo "== bench attention decode set, window=1, BF16 rc=$?"; grep -E "fast|FAIL" $f.log
  pack
  if [ -n "${NCU-}" ]; then
    for kvh in 8 1; do
      n=$((1536 * 8 / kvh))
      f=$R/$TAG-attn-kvh$kvh-ncu.txt
      timeout 150 ncu --kernel-name regex:attention_decode_tiled --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section Occupancy --section LaunchStats --section SchedulerStats \
        $B bench attention --dtype bf16 --kv fp8 --kv-heads $kvh --decode ${n}x193 \
        --cases "${n}x193" --iters 3 > $f 2>&1
      echo "== ncu kvh=$kvh rc=$?"
      grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit|Achieved Occupancy|Theoretical Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps|Stall|Mem Busy|Max Bandwidth|L1/TEX Hit|Block Limit" $f | head -30
    done
    pack
  fi
fi
TAG=$TAG TESTS= SANITIZE= bash "$(dirname "$0")/gpu_session10.sh" | grep -v "^NVIDIA\|^H100\|^H200"
[ -n "$atable" ] && echo "== decode attention, batch 1,536 x 193, E4M3 ($TAG)$atable"
exit 0
