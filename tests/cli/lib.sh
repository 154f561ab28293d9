# Shared by the CLI tests (tests/cli/*_test.sh), which source it first thing:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # with "$@" still the script's
#
# A test is run as `bash X_test.sh /path/to/casfs`. This file provides:
#   casfs                      the binary (absolute path: checks run from other dirs)
#   work                       a fresh directory under $CASFS_TEST_DIR (default /var/tmp;
#                              the test removes it)
#   pass/fail                  counted checks, printed as "ok" / "FAIL"
#   cas ARGS…                  runs casfs: stdout in $out, stderr in $err, status in $rc
#   show, expect_rc, expect_eq
#   finish                     the summary line; the exit status is non-zero on any failure
set -uo pipefail

lib_name=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
casfs=${1:?usage: $lib_name.sh /path/to/casfs}
if [[ ! -x "$casfs" ]]; then
  echo "not an executable: $casfs" >&2
  exit 2
fi
casfs=$(realpath "$casfs")
command -v python3 >/dev/null || {
  echo "python3 is needed to read --json output" >&2
  exit 2
}

# /var/tmp rather than /tmp: a real disk, as the store is meant to live on.
work=$(mktemp -d "${CASFS_TEST_DIR:-/var/tmp}/casfs-$lib_name.XXXXXX")

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  echo "ok    $1"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL  $1"
  shift
  local line
  for line in "$@"; do echo "      $line"; done
}

out=$work/out
err=$work/err
rc=0
cas() {
  "$casfs" "$@" >"$out" 2>"$err"
  rc=$?
}
show() { echo "rc=$rc stdout=[$(head -c 600 "$out")] stderr=[$(head -c 300 "$err")]"; }

expect_rc() { # expect_rc WANT DESCRIPTION
  if [[ $rc -eq $1 ]]; then pass "$2"; else fail "$2" "want exit $1, got: $(show)"; fi
}
expect_eq() { # expect_eq DESCRIPTION WANT GOT
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1" "want [$2], got [$3]"; fi
}

finish() {
  echo "$passed passed, $failed failed"
  ((failed == 0))
}
