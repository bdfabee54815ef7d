#!/usr/bin/env bash
# Session 12's GPU run (one H100): GPU tests (TESTS), compute-sanitizer memcheck (SANITIZE),
# bench-kernels --only routing at KTOKENS with MIXSERVE_MOE_SORT=tiled and =block,
# OFF-128 for each OFF_CFGS entry (as tools/gpu_session10.sh), then with PROFILE=1 an ncu
# per-kernel breakdown (?layers=2, kernels serialized, 2 steps) of a batch-1,536 decode step and
# a 16,384-token prefill step. Reports in $OUT/results.tgz; a short table at the end.
# Written in session 12, which got no GPU. The first run (tests of the new kernels with the new
# paths on everywhere, then an A/B; ~9 min):
#   MIXSERVE_MOE_SORT=tiled MIXSERVE_MOE_PRESYNC=1 MIXSERVE_GEMM_PRETUNE=1 TAG=h100-s13a \
#   TESTS='CudaMoe.*:CudaMoePaddedFp8.*:CudaSampling.*:CudaBackend*:CudaGraph*' \
#   SANITIZE='CudaMoe.CountingSortAcrossBlocksMatchesStableSort:CudaMoePaddedFp8.GroupExperts*:CudaMoePaddedFp8.DerivedGather*:CudaMoePaddedFp8.CountedStepMatchesCpuReference:CudaSampling.GreedyMatchesHostWithTies' \
#   KTOKENS='1536 16384' LIMIT=140 OFF_CFGS='old:1536:16384:0.95:MIXSERVE_MOE_SORT=block,MIXSERVE_MOE_PRESYNC=0,MIXSERVE_GEMM_PRETUNE=0,MIXSERVE_LOG=debug
#   new:1536:16384:0.95 old2:1536:16384:0.95:MIXSERVE_MOE_SORT=block,MIXSERVE_MOE_PRESYNC=0,MIXSERVE_GEMM_PRETUNE=0
#   new2:1536:16384:0.95' tools/gpu_session12.sh
# (TESTS should then include CudaMoePaddedFp8.PretuneTimesTheReachableClassesAtSetup, already in
# CudaMoePaddedFp8.*.) Then (same machine if warm) the changes apart: pre-tuning alone, tiled
# sort alone, pre-sync alone, PROFILE=1. The debug log of "old" shows whether GEMM classes are
# autotuned inside the measured run (lines "batched FP8 GEMM autotune" after "requests (64
# warm-up)").
set -uo pipefail
TAG=${TAG:-h100-s12}
. "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader | tee $R/$TAG-gpu.txt
gpu_tests
gpu_memcheck
if [ -n "${KTOKENS-}" ]; then
  for v in tiled block; do
    MIXSERVE_MOE_SORT=$v timeout 120 $B bench-kernels --only routing --tokens $KTOKENS \
      --out $R/$TAG-kernels-routing-$v.json > $R/$TAG-kernels-routing-$v.log 2>&1
    echo "== bench-kernels routing, $v sort: rc=$?"; grep -E "moe_sort" $R/$TAG-kernels-routing-$v.log
  done
  pack
fi
TAG=$TAG TESTS= SANITIZE= bash "$(dirname "$0")/gpu_session10.sh" | grep -v "^NVIDIA\|^H100\|^H200"
if [ -n "${PROFILE:-}" ]; then
  M="synthetic:mixtral-8x7b?layers=2"
  FP8="--device cuda --quantization fp8 --kv-cache-dtype fp8"
  for what in ${CASES:-decode1536 prefill16384}; do
    case $what in
      prefill16384) args="--prefill --batch 128 --context 128";;
      decode1536) args="--batch 1536 --context 192";;
    esac
    f=$R/$TAG-$what-ncu.csv
    MIXSERVE_GEMM_AUTOTUNE=0 timeout 150 ncu --csv --print-units base \
      --metrics gpu__time_duration.sum,dram__bytes.sum --clock-control none --profile-from-start off \
      $B bench-step --model "$M" $FP8 $args --iters 2 > $f 2>/dev/null
    echo "== $what (per step of 2 layers)"; python3 tools/ncu_summary.py $f 2 | head -${TOP:-16}
  done
  pack
fi
