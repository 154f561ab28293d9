#!/usr/bin/env bash
# Runs clang-tidy (configuration: .clang-tidy) over casfs's own sources: store/, fs/,
# tools/ and tests/fuzz/, with the compile commands of a clang configure in
# build-tidy/ (configured only: nothing is built). Any finding fails the run.
#
#   tools/dev/tidy.sh [FILE...]     default: every .cc file of those directories
#
# Environment: CASFS_JOBS (parallel clang-tidy processes, default 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tools/dev/install-deps.sh
CC=clang CXX=clang++ cmake -S . -B build-tidy -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
files=("$@")
if ((${#files[@]} == 0)); then
  mapfile -t files < <(find store fs tools tests/fuzz -maxdepth 1 -name '*.cc' | sort)
fi
start=$SECONDS
# run-clang-tidy takes regular expressions; anchor each path.
run-clang-tidy -quiet -p build-tidy -j "${CASFS_JOBS:-2}" \
  "${files[@]/#/^$PWD/}" >build-tidy/tidy.log 2>&1 || status=$?
# clang-tidy colours its output whatever the terminal; the log is read as text.
sed -i 's/\x1b\[[0-9;]*m//g' build-tidy/tidy.log
grep -E '(warning|error): ' build-tidy/tidy.log | sort -u || true
if ((${status:-0} != 0)); then
  echo "tidy.sh: clang-tidy found problems (full output: build-tidy/tidy.log)" >&2
  exit 1
fi
echo "tidy.sh: ${#files[@]} files clean in $((SECONDS - start)) s"
