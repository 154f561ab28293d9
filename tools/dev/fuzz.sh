#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang in build-fuzz/ and runs each for
# a bounded time, starting from its checked-in seed corpus (tests/fuzz/corpus/TARGET/).
#
#   tools/dev/fuzz.sh [SECONDS [TARGET...]]     SECONDS per target, default 60
#
# New inputs libFuzzer finds go to build-fuzz/corpus/TARGET/, never into the
# repository. A crash stops the run with libFuzzer's report; the input that caused it
# is saved as build-fuzz/artifacts/TARGET-crash-…: fix the bug, then copy that file
# into tests/fuzz/corpus/TARGET/, where the ordinary suite replays it (ctest -R
# fuzz_replay) from then on.
#
# Environment: CASFS_JOBS (compile jobs, default 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(pack_record index_value store_config control_request)
fi
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS [TARGET...]]" >&2
  exit 2
fi

tools/dev/install-deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASFS_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"${CASFS_JOBS:-2}" --target "${targets[@]/#/fuzz_}"

mkdir -p build-fuzz/artifacts
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1
for target in "${targets[@]}"; do
  seeds=tests/fuzz/corpus/$target
  found=build-fuzz/corpus/$target
  mkdir -p "$found"
  echo "fuzz.sh: $target for ${seconds}s (seeds: $(find "$seeds" -type f | wc -l))"
  if ! build-fuzz/tests/fuzz/fuzz_"$target" -max_total_time="$seconds" -timeout=25 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$target-" "$found" "$seeds" \
    >"build-fuzz/$target.log" 2>&1; then
    tail -n 60 "build-fuzz/$target.log" >&2
    echo "fuzz.sh: $target failed; the input is in build-fuzz/artifacts/ (see above)" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "build-fuzz/$target.log" | tail -n 2 || true
done
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no crash"
