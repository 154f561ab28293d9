#!/usr/bin/env bash
# Builds casfs with sanitizers and runs the whole test suite under them: unit, CLI and
# integration tests, the mount daemon included (it is the same instrumented casfs).
#
#   tools/dev/sanitize.sh asan [CTEST ARGS...]   AddressSanitizer + UndefinedBehaviorSanitizer
#                                                (and LeakSanitizer), in build-asan/
#   tools/dev/sanitize.sh tsan [CTEST ARGS...]   ThreadSanitizer, in build-tsan/
#
# Any report fails the run. The daemon runs in the background with no terminal, so
# ASan and TSan write their reports to files (log_path) instead of stderr; they are
# shown, and counted as a failure, at the end. GCC's UBSan runtime writes to stderr
# only: in the daemon that is its logfile= (the integration tests show its tail on
# failure), and -fno-sanitize-recover makes the daemon stop, so the test fails.
#
# Environment:
#   CASFS_TEST_SCALE  percent of the heaviest integration loads (default 25 here;
#                     tests/integration/lib.sh `scaled`): the instrumented daemon is
#                     several times slower, and every test still runs, only smaller
#   CASFS_TEST_DIR    where tests put their stores and mounts (default /var/tmp)
#   CASFS_JOBS        parallel compile and test jobs (default 2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

kind=${1:-}
case "$kind" in
  asan) sanitize=address,undefined ;;
  tsan) sanitize=thread ;;
  *)
    echo "usage: $0 asan|tsan [ctest arguments...]" >&2
    exit 2
    ;;
esac
shift
build=build-$kind
jobs=${CASFS_JOBS:-2}
root=$PWD

tools/dev/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCASFS_SANITIZE="$sanitize" >/dev/null
cmake --build "$build" -j"$jobs"

reports=$root/$build/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
export CASFS_TEST_SCALE=${CASFS_TEST_SCALE:-25}
# Lets the integration tests' slow steps take longer without ctest's 1200 s timeout
# cutting them off first.
export CASFS_STEP_TIMEOUT=${CASFS_STEP_TIMEOUT:-900}
common="log_path=$reports/report:log_exe_name=1"
export UBSAN_OPTIONS="$common:print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="$common:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$root/tools/dev/lsan.supp:print_suppressions=0"
# detect_deadlocks=0: TSan's lock-order checker tracks at most 64 locks held by one
# thread and dies with an internal CHECK past that, and a write-out batch holds the
# io lock of every file in it (hundreds, when many small files were written).
export TSAN_OPTIONS="$common:halt_on_error=1:detect_deadlocks=0:suppressions=$root/tools/dev/tsan.supp:print_suppressions=0"

start=$SECONDS
status=0
# TSan keeps application memory in fixed ranges; with address randomization the 1 TiB
# LMDB map often finds no room there (mmap fails with ENOMEM in about half the runs).
# The personality set by setarch -R is inherited by every test and daemon.
runner=()
if [[ $kind == tsan ]]; then runner=(setarch "$(uname -m)" -R); fi
"${runner[@]}" ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@" || status=$?
echo "sanitize.sh $kind: ctest took $((SECONDS - start)) s (CASFS_TEST_SCALE=$CASFS_TEST_SCALE)"

shopt -s nullglob
found=("$reports"/report*)
if ((${#found[@]} > 0)); then
  echo "sanitize.sh $kind: ${#found[@]} sanitizer report(s):" >&2
  for file in "${found[@]}"; do
    echo "=== $file" >&2
    head -n 80 "$file" >&2
  done
  status=1
fi
exit "$status"
