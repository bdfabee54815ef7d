#!/usr/bin/env bash
# Packs what a run on the GPU machine needs into .devcarry/ (ignored by git, carried by the
# device tool): the mixserve binaries and the shared libraries the GPU image lacks.
# The binary's RPATH is $ORIGIN/lib, so .devcarry/bin/lib/ is searched first.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rm -rf .devcarry && mkdir -p .devcarry/bin/lib
for b in mixserve mixserve_tests; do
  [ -f "$build/$b" ] && cp "$build/$b" .devcarry/bin/ && strip --strip-debug ".devcarry/bin/$b"
done
for b in .devcarry/bin/mixserve*; do
  ldd "$b" | awk '/=> \// {print $3}' | grep -v "^$PWD/.devcarry/" | while read -r lib; do
    case "$(basename "$lib")" in
      libprometheus*|libgomp*|libcurl*|libnghttp*|libpsl*|libssh*|librtmp*|libbrotli*|libidn*) cp -L "$lib" .devcarry/bin/lib/ ;;
    esac
  done
done
du -sh .devcarry
