#!/usr/bin/env bash
# Installs missing dependencies, builds, and runs every test (unit and CLI tests,
# each once per io engine). Extra arguments go to ctest, e.g. `-R cli_` or `-V`;
# without them the sanitized suite and the fuzz targets run too (see below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tools/dev/build.sh
ctest --test-dir build --output-on-failure -j2 "$@"

# A whole run (no ctest arguments, as CI does) also runs the suite under ASan+UBSan,
# each fuzz target for CASFS_FUZZ_SECONDS (default 30) and clang-tidy.
# tools/dev/sanitize.sh, fuzz.sh and tidy.sh run each on its own.
if (($# == 0)); then
  tools/dev/sanitize.sh asan
  tools/dev/fuzz.sh "${CASFS_FUZZ_SECONDS:-30}"
  tools/dev/tidy.sh
fi
