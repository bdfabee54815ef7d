#!/usr/bin/env bash
# Session 13's GPU run (one H100): GPU tests (TESTS), the filter WTESTS again under WTESTS_ENV
# (default MIXSERVE_DECODE_TILED_BLOCKS=4), compute-sanitizer memcheck (SANITIZE), then with
# ATTN=1 the decode-attention experiments: `bench attention` at batch 1,536 x 193 keys (E4M3
# cache) with 8 KV heads and (KVHS) 1 KV head at 8x the sequences (the same bytes and warps; one
# head makes a block's 16 keys one contiguous run in either pool layout), for each binary of
# ATTN_BINS (new = .devcarry/bin/mixserve; old = the previous build, .devcarry/bin/mixserve_old,
# carried gzipped) and each environment setting of VARIANTS ("-" = none); the whole decode set
# for each SET_VARIANTS entry (checked against the generic kernel); with NCU=1 an ncu profile of
# the tiled kernel for each NCU_SPECS entry bin:kvh. Then OFF-128 for each OFF_CFGS entry (as
# tools/gpu_session10.sh; names starting with "old" run the old binary). Reports in
# $OUT/results.tgz; short tables at the end. Run a (slot-major build as old, head-major as new):
#   TAG=h100-s13a TESTS='CudaAttention*:CudaOps.RopeAndKvWriteMatchCpu:CudaBackend*:...' \
#   ATTN=1 ATTN_BINS='old new' NCU=1 LIMIT=110 \
#   OFF_CFGS='old:1536:16384:0.95 new:1536:16384:0.95' tools/gpu_session13.sh
set -uo pipefail
TAG=${TAG:-h100-s13}
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/$TAG-gpu.txt
gpu_tests
if [ -n "${WTESTS-}" ]; then
  env ${WTESTS_ENV:-MIXSERVE_DECODE_TILED_BLOCKS=4} timeout ${TEST_LIMIT:-240} $T --gtest_filter="$WTESTS" \
    > $R/$TAG-gpu-tests-window.log 2>&1
  echo "window tests rc=$?"; grep -E "^\[  FAILED|^\[  PASSED|tests ran" $R/$TAG-gpu-tests-window.log | head -8
  pack
fi
gpu_memcheck
OLD=.devcarry/bin/mixserve_old
[ -f $OLD.gz ] && gunzip -f $OLD.gz && chmod +x $OLD
atable=""
if [ -n "${ATTN-}" ]; then
  for bin in ${ATTN_BINS:-new}; do
    exe=$B; [ $bin = old ] && exe=$OLD
    for kvh in ${KVHS:-8 1}; do
      n=$((1536 * 8 / kvh))
      for v in ${VARIANTS:--}; do
        envv=(); [ "$v" = "-" ] || envv=("$v")
        f=$R/$TAG-attn-$bin-kvh$kvh-${v//[=_]/}
        env "${envv[@]}" timeout 120 $exe bench attention --dtype bf16 --kv fp8 \
          --kv-heads $kvh --decode ${n}x193 --cases "${n}x193" --iters 50 --json $f.json > $f.log 2>&1
        echo "== bench attention $bin kvh=$kvh $v rc=$?"; grep -E "decode|FAIL" $f.log | head -4
        atable+=$(printf '\n%-4s %-9s kvh=%s %-32s %s' $bin "${n}x193" $kvh "$v" "$(grep -m1 ' fast' $f.log | awk '{for(i=1;i<=NF;i++) if($i=="us"||$i=="TB/s") printf "%s %s  ", $(i-1), $i}')")
      done
    done
  done
  for v in ${SET_VARIANTS-}; do  # the whole decode set (E4M3), checked against the generic kernel
    envv=(); [ "$v" = "-" ] || envv=("$v")
    f=$R/$TAG-attn-decode-set-${v//[=_]/}
    env "${envv[@]}" timeout 120 $B bench attention --dtype bf16 --kv fp8 \
      --cases decode --iters 30 --json $f.json > $f.log 2>&1
    echo "== bench attention decode set, E4M3, $v rc=$?"; grep -E "fast|FAIL" $f.log
  done
  pack
  if [ -n "${NCU-}" ]; then
    for spec in ${NCU_SPECS:-old:8 new:8}; do
      bin=${spec%%:*} kvh=${spec##*:}
      exe=$B; [ $bin = old ] && exe=$OLD
      n=$((1536 * 8 / kvh))
      f=$R/$TAG-attn-$bin-kvh$kvh-ncu.txt
      timeout 150 ncu --kernel-name regex:attention_decode_tiled --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section Occupancy --section LaunchStats --section SchedulerStats \
        $exe bench attention --dtype bf16 --kv fp8 --kv-heads $kvh --decode ${n}x193 \
        --cases "${n}x193" --iters 3 > $f 2>&1
      echo "== ncu $bin kvh=$kvh rc=$?"
      grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Hit|Achieved Occupancy|Theoretical Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps|Stall|Mem Busy|Max Bandwidth|L1/TEX Hit|Block Limit" $f | head -30
    done
    pack
  fi
fi
# OFF-128 (entries as tools/gpu_session10.sh; names starting with "old" run $OLD).
OLD_BIN=$OLD TAG=$TAG TESTS= SANITIZE= bash "$(dirname "$0")/gpu_session10.sh" | grep -v "^NVIDIA\|^H100\|^H200"
[ -n "$atable" ] && echo "== decode attention, batch 1,536 x 193, E4M3 ($TAG)$atable"
exit 0
