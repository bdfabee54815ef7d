# Sourced by the session scripts (tools/gpu_session*.sh) on the GPU machine, repository root:
# the bundle's binaries, $R for reports (packed into $OUT/results.tgz by `pack`), and the GPU
# tests / compute-sanitizer steps every session runs. Needs TAG set.
B=.devcarry/bin/mixserve; T=.devcarry/bin/mixserve_tests
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R
export MIXSERVE_ASSETS=${MIXSERVE_ASSETS:-$PWD/assets} MIXSERVE_SOURCE_DIR=${MIXSERVE_SOURCE_DIR:-$PWD}
pack() { tar czf $OUT/results.tgz -C $R .; }
# TESTS (a gtest filter): the GPU tests, log in $R/$TAG-gpu-tests.log; $1: an extra pattern
# of the log's lines to print.
gpu_tests() {
  [ -n "${TESTS-}" ] || return 0
  timeout ${TEST_LIMIT:-240} $T --gtest_filter="$TESTS" > $R/$TAG-gpu-tests.log 2>&1
  echo "tests rc=$?"; grep -E "^\[  FAILED|^\[  PASSED|tests ran" $R/$TAG-gpu-tests.log | head -12
  [ -n "${1-}" ] && grep -E "$1" $R/$TAG-gpu-tests.log | head -8
  pack
}
# SANITIZE (a gtest filter): those tests under compute-sanitizer memcheck.
gpu_memcheck() {
  [ -n "${SANITIZE-}" ] || return 0
  timeout ${SAN_LIMIT:-240} compute-sanitizer --tool memcheck $T --gtest_filter="$SANITIZE" \
    > $R/$TAG-memcheck.log 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" $R/$TAG-memcheck.log | head -4
  pack
}
