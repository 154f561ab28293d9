# Shared by every integration test (tests/integration/*_test.sh), which sources it
# first thing:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # with "$@" still the script's
#
# A test is run as `bash X_test.sh /path/to/casfs` (ctest runs it once per io engine,
# with CASFS_IO=uring or sync in the environment, which the daemon simply inherits).
#
# What this file provides:
#   CASFS                      the casfs binary (absolute path)
#   WORK                       a fresh directory under $CASFS_TEST_DIR (default
#                              /var/tmp), removed on exit
#   casfs_mkfs STORE
#   casfs_mount STORE MNT [mount args...]   returns once `mountpoint -q MNT` holds
#   casfs_unmount STORE MNT    fusermount3 -u (retried on EBUSY), then waits until the
#                              daemon has let go of STORE/run/lock
#   casfs_remount STORE MNT [mount args...]
#   store_status STORE FILE    `casfs store status STORE --json` into FILE
#   pass/fail/check/check_fails/expect_eq/expect_same/expect_lt/expect_le/bail/finish:
#                              counted checks (and section: a timed heading), in the
#                              style of tests/cli/store_cli_test.sh
#   t CMD...                   CMD under `timeout` (every blocking step is bounded)
#   tree_sums/tree_manifest/tree_file_bytes: descriptions of a tree to compare
#
# On exit (normal, failure, signal or the watchdog) anything this test mounted is
# lazily unmounted and its daemons are killed, so a failing test leaves no mount and no
# hung process behind. A watchdog ends the test after CASFS_TEST_TIMEOUT seconds
# (default 1080): keep it below ctest's TIMEOUT (1200 in tests/CMakeLists.txt), since
# ctest kills the test outright, leaving no chance to clean up.
#
# Never read a daemonizing `casfs mount` through a pipe or $(...): the daemon may keep
# the pipe open for its whole life. casfs_mount writes its output to a file.
#
# Exit status: 0 when every check passed, 1 when one failed, 2 on a usage error, 77
# when this machine cannot mount FUSE filesystems (no /dev/fuse or no fusermount3).

set -uo pipefail
export LC_ALL=C TZ=UTC

LIB_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
CASFS=${1:-}
if [[ -z "$CASFS" ]]; then
  echo "usage: $LIB_NAME.sh /path/to/casfs" >&2
  exit 2
fi
if [[ ! -x "$CASFS" ]]; then
  echo "not an executable: $CASFS" >&2
  exit 2
fi
CASFS=$(realpath "$CASFS")

# require_tools CMD...: exits 2 naming what is missing (tools/dev/install-deps.sh
# installs them all).
require_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]} > 0)); then
    echo "$LIB_NAME: missing tools: ${missing[*]} (tools/dev/install-deps.sh installs them)" >&2
    exit 2
  fi
}
require_tools timeout flock mountpoint python3 ps sha256sum find sort awk
if [[ ! -c /dev/fuse ]] || ! command -v fusermount3 >/dev/null 2>&1; then
  echo "$LIB_NAME: skipped: this machine cannot mount FUSE filesystems (/dev/fuse or fusermount3 missing)"
  exit 77
fi

# /var/tmp rather than /tmp: a real disk, as a store is meant to live on.
WORK=$(mktemp -d "${CASFS_TEST_DIR:-/var/tmp}/casfs-$LIB_NAME.XXXXXX") || exit 2
WORK=$(realpath "$WORK")
mkdir -p "$WORK/.lib"
LIB_MOUNTS=$WORK/.lib/mounts # one line per live mount: STORE<TAB>MNT<TAB>PID (PID for -f)
: >"$LIB_MOUNTS"
LIB_STEP_TIMEOUT=${CASFS_STEP_TIMEOUT:-600}
LIB_TIMEOUT=${CASFS_TEST_TIMEOUT:-1080}
LIB_PASSED=0
LIB_FAILED=0
LIB_MAIN_PID=$$
LIB_WATCHDOG=

echo "$LIB_NAME: casfs=$CASFS CASFS_IO=${CASFS_IO:-unset} work=$WORK"

# --- checks ----------------------------------------------------------------------
pass() {
  LIB_PASSED=$((LIB_PASSED + 1))
  echo "ok    $1"
}
fail() { # fail NAME [DETAIL LINE...]
  LIB_FAILED=$((LIB_FAILED + 1))
  echo "FAIL  $1"
  shift
  local line
  for line in "$@"; do printf '      %s\n' "$line"; done
}
# check NAME CMD...: passes when CMD (a command or a function) exits 0; on failure shows
# the status and the end of its output. CMD's stdout and stderr are kept in $LIB_OUT.
LIB_OUT=$WORK/.lib/out
check() {
  local name=$1 rc
  shift
  "$@" >"$LIB_OUT" 2>&1
  rc=$?
  if ((rc == 0)); then
    pass "$name"
  else
    fail "$name" "command: $*" "exit $rc; output (last 15 lines):" "$(tail -n 15 "$LIB_OUT")"
  fi
  return $rc
}
# check_fails NAME CMD...: passes when CMD exits non-zero.
check_fails() {
  local name=$1 rc
  shift
  "$@" >"$LIB_OUT" 2>&1
  rc=$?
  if ((rc != 0)); then
    pass "$name"
  else
    fail "$name" "command: $*" "want a non-zero exit, got 0; output:" "$(tail -n 15 "$LIB_OUT")"
  fi
  ((rc != 0))
}
expect_eq() { # expect_eq NAME WANT GOT
  if [[ "$2" == "$3" ]]; then
    pass "$1"
  else
    if ((${#2} + ${#3} > 2000)); then # too long to show whole: show where they part
      local common=0
      while [[ "${2:common:1}" == "${3:common:1}" ]]; do common=$((common + 1)); done
      fail "$1" "want (${#2} chars) and got (${#3} chars) differ from char $common on:" \
        "want [...${2:common:300}...]" "got  [...${3:common:300}...]"
    else
      fail "$1" "want [$2]" "got  [$3]"
    fi
    return 1
  fi
}
expect_same() { # expect_same NAME FILE_A FILE_B: identical bytes, else a diff excerpt
  if cmp -s "$2" "$3"; then
    pass "$1"
  else
    fail "$1" "$2 and $3 differ (< want, > got; first 20 lines):" \
      "$(diff "$2" "$3" 2>&1 | head -n 20)"
    return 1
  fi
}
expect_lt() { # expect_lt NAME VALUE LIMIT [CONTEXT]: integer VALUE < LIMIT
  if [[ "$2" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]] && (($2 < $3)); then
    pass "$1 ($2 < $3${4:+; $4})"
  else
    fail "$1" "want a value below $3, got [$2]${4:+; $4}"
    return 1
  fi
}
expect_le() { # expect_le NAME VALUE LIMIT [CONTEXT]: integer VALUE <= LIMIT
  if [[ "$2" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]] && (($2 <= $3)); then
    pass "$1 ($2 <= $3${4:+; $4})"
  else
    fail "$1" "want a value of at most $3, got [$2]${4:+; $4}"
    return 1
  fi
}
# section NAME: a heading in the output, with the seconds since the test started.
section() { echo "--- $1 (at ${SECONDS}s)"; }
# bail MESSAGE: a failure after which the rest of the test means nothing.
bail() {
  fail "$1 (giving up on the rest of $LIB_NAME)"
  exit 1
}
# finish: the last line of a test; the EXIT trap prints the summary and picks the status.
finish() { exit 0; }

# scaled N: N times $CASFS_TEST_SCALE percent (default 100), at least 1. The heaviest
# loads (operation counts, directory sizes, kills) go through it, so that slow builds
# (tools/dev/sanitize.sh) run every test, only smaller.
scaled() {
  local n=$(($1 * ${CASFS_TEST_SCALE:-100} / 100))
  echo $((n > 0 ? n : 1))
}

# t CMD...: CMD bounded by $CASFS_STEP_TIMEOUT seconds (default 600), then killed.
t() { timeout -k 10 "$LIB_STEP_TIMEOUT" "$@"; }

# json_get FILE KEY.PATH: the value at a dotted path of a JSON file.
json_get() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)' "$1" "$2"
}

# --- trees -----------------------------------------------------------------------
# Helpers print relative paths, so trees in different places compare equal. Optional
# extra arguments name top-level entries to leave out (e.g. huge sparse files).
lib_find() { # lib_find DIR [SKIP...] -- FIND EXPRESSION...
  local dir=$1 prune=()
  shift
  while (($# > 0)) && [[ $1 != -- ]]; do
    prune+=(-path "./$1" -prune -o)
    shift
  done
  shift
  (cd "$dir" && t find . "${prune[@]}" "$@")
}
# tree_sums DIR [SKIP...]: "sha256  path" of every regular file, sorted by path.
tree_sums() {
  local dir=$1
  shift
  lib_find "$dir" "$@" -- -type f -print0 | sort -z | (cd "$dir" && t xargs -0 -r sha256sum --)
}
# tree_manifest DIR [SKIP...]: type, mode, owner (when root), link count and size
# (not for directories: those are filesystem-specific), mtime with nanoseconds and
# symlink target of every entry, sorted by path. Neither atime nor ctime: those cannot
# be copied from one filesystem to another.
if ((EUID == 0)); then LIB_OWNER='%U:%G '; else LIB_OWNER=''; fi
tree_manifest() {
  local dir=$1
  shift
  {
    lib_find "$dir" "$@" -- ! -type d -printf "%p|%y %m $LIB_OWNER%n %s %T@ -> %l\n"
    lib_find "$dir" "$@" -- -type d -printf "%p|%y %m $LIB_OWNER%T@\n"
  } | sort
}
# tree_file_bytes DIR: the sum of the sizes of the non-directories of a tree, each
# inode counted once (as du counts them).
tree_file_bytes() {
  lib_find "$1" -- ! -type d -printf '%i %s\n' | awk '!seen[$1]++ { sum += $2 } END { print sum + 0 }'
}

# --- mounts ----------------------------------------------------------------------
# lib_is_mounted MNT: from /proc/self/mountinfo, so a hung daemon cannot block it.
lib_is_mounted() {
  local escaped=${1// /\\040}
  awk -v m="$escaped" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}
lib_register() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$LIB_MOUNTS"; }
lib_unregister() { # lib_unregister MNT
  awk -F '\t' -v m="$1" '$2 != m' "$LIB_MOUNTS" >"$LIB_MOUNTS.new" && mv "$LIB_MOUNTS.new" "$LIB_MOUNTS"
}
lib_registered_pid() { awk -F '\t' -v m="$1" '$2 == m { print $3 }' "$LIB_MOUNTS" | tail -n 1; }
# lib_daemon_pids STORE: processes serving STORE: any `casfs mount STORE …` and the pid
# written in STORE/run/lock. Reads /proc only, never the mount.
lib_daemon_pids() {
  local store=$1 dir pid arg is_mount has_store args lockpid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$LIB_MAIN_PID" || $pid == "$BASHPID" ]] && continue
    mapfile -d '' -t args 2>/dev/null <"$dir/cmdline" || continue
    is_mount=0 has_store=0
    for arg in "${args[@]}"; do
      [[ $arg == mount ]] && is_mount=1
      [[ $arg == "$store" ]] && has_store=1
    done
    ((is_mount && has_store)) && [[ ${args[0]:-} == *casfs* || ${args[1]:-} == *casfs* ]] && echo "$pid"
  done
  lockpid=$(head -c 32 "$store/run/lock" 2>/dev/null | tr -dc 0-9)
  if [[ -n "$lockpid" && -r /proc/$lockpid/cmdline ]] && tr '\0' ' ' <"/proc/$lockpid/cmdline" | grep -q casfs; then
    echo "$lockpid"
  fi
}
# lib_lock_free STORE: nobody holds STORE/run/lock.
lib_lock_free() {
  [[ ! -e "$1/run/lock" ]] || timeout 5 flock -n "$1/run/lock" true 2>/dev/null
}
lib_daemon_list() { # a one-line description of the processes still serving STORE
  local pid
  for pid in $(lib_daemon_pids "$1" | sort -u); do
    printf '%s[%s] ' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | head -c 200)"
  done
}

casfs_mkfs() { # casfs_mkfs STORE
  timeout -k 5 60 "$CASFS" mkfs "$1" >"$WORK/.lib/mkfs.log" 2>&1
  local rc=$?
  if ((rc != 0)); then
    fail "casfs mkfs $1" "exit $rc: $(head -c 1000 "$WORK/.lib/mkfs.log")"
    return 1
  fi
}

# casfs_mount STORE MNT [ARGS...]: with -f among ARGS the daemon runs in the background
# of this shell (its exit status is checked at unmount); otherwise `casfs mount`
# daemonizes and must return once the mount is live.
LIB_MOUNT_LOG=$WORK/.lib/mount.log
casfs_mount() {
  local store mnt arg foreground=0 pid="" rc deadline
  store=$(realpath -m "$1")
  mnt=$(realpath -m "$2")
  shift 2
  for arg in "$@"; do [[ $arg == -f ]] && foreground=1; done
  # CASFS_MOUNT_OPTIONS: -o options for every mount of the run (e.g. uring).
  if [[ -n "${CASFS_MOUNT_OPTIONS:-}" ]]; then set -- "$@" -o "$CASFS_MOUNT_OPTIONS"; fi
  mkdir -p "$mnt"
  if lib_is_mounted "$mnt"; then
    fail "casfs mount $store $mnt" "$mnt is already a mount point"
    return 1
  fi
  # Output goes to a file, never a pipe: a daemon that keeps stderr open would
  # otherwise hold up whoever reads the pipe.
  if ((foreground)); then
    "$CASFS" mount "$store" "$mnt" "$@" >>"$LIB_MOUNT_LOG" 2>&1 </dev/null &
    pid=$!
    lib_register "$store" "$mnt" "$pid"
  else
    lib_register "$store" "$mnt" ""
    timeout -k 5 60 "$CASFS" mount "$store" "$mnt" "$@" >"$LIB_MOUNT_LOG" 2>&1 </dev/null
    rc=$?
    if ((rc != 0)); then
      fail "casfs mount $store $mnt $*" "exit $rc: $(tail -n 5 "$LIB_MOUNT_LOG")"
      return 1
    fi
  fi
  deadline=$((SECONDS + 20))
  until lib_is_mounted "$mnt" && timeout 10 mountpoint -q "$mnt"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"
      fail "casfs mount -f $store $mnt" "the daemon exited ($?) before the mount was live: $(tail -n 5 "$LIB_MOUNT_LOG")"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      fail "casfs mount $store $mnt $*: mount is live within 20 s" "$(tail -n 5 "$LIB_MOUNT_LOG")"
      return 1
    fi
    sleep 0.1
  done
  if [[ ",${CASFS_MOUNT_OPTIONS:-}," == *,uring,* ]] && ! lib_serves_fuse_uring "$store"; then
    fail "casfs mount $store $mnt $*: requests come through io_uring" \
      "no casfs-ring thread in $(lib_daemon_list "$store"); $(tail -n 5 "$LIB_MOUNT_LOG")"
    return 1
  fi
}

# lib_serves_fuse_uring STORE: the daemon serving STORE has its FUSE-over-io_uring
# queue threads (they start when the kernel accepts the transport at FUSE_INIT).
lib_serves_fuse_uring() {
  local pid task
  for pid in $(lib_daemon_pids "$1" | sort -u); do
    for task in /proc/"$pid"/task/*; do
      [[ $(cat "$task/comm" 2>/dev/null) == casfs-ring-* ]] && return 0
    done
  done
  return 1
}

# casfs_unmount STORE MNT: fusermount3 -u (retried for 10 s while busy), then waits up to
# 60 s for the daemon to write everything out and let go of STORE/run/lock.
casfs_unmount() {
  local store mnt pid out rc deadline
  store=$(realpath -m "$1")
  mnt=$(realpath -m "$2")
  pid=$(lib_registered_pid "$mnt")
  # A daemon that died under a mount leaves it answering ENOTCONN; fusermount3 -u would
  # still succeed, so look first.
  if ! out=$(timeout 10 stat -c %i "$mnt" 2>&1); then
    fail "the daemon still serves $mnt before unmount" "stat: $out" "daemons: $(lib_daemon_list "$store")"
  fi
  deadline=$((SECONDS + 10))
  while :; do
    out=$(timeout -k 5 30 fusermount3 -u "$mnt" 2>&1)
    rc=$?
    ((rc == 0)) && break
    if [[ $out == *[Bb]usy* ]] && ((SECONDS < deadline)); then
      sleep 0.2
      continue
    fi
    fail "fusermount3 -u $mnt" "exit $rc: $out" \
      "still open there: $(timeout 10 fuser -vm "$mnt" 2>&1 | tail -n +2 | head -n 10)"
    return 1
  done
  deadline=$((SECONDS + 60))
  until lib_lock_free "$store"; do
    if ((SECONDS >= deadline)); then
      fail "the daemon lets go of $store/run/lock within 60 s of unmount" "still running: $(lib_daemon_list "$store")"
      return 1
    fi
    sleep 0.1
  done
  if [[ -n "$pid" ]]; then
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      fail "casfs mount -f exits within 30 s of letting go of the lock" "pid $pid still running"
      return 1
    fi
    wait "$pid"
    rc=$?
    if ((rc != 0)); then
      fail "casfs mount -f exits 0 after unmount" "exit $rc: $(tail -n 5 "$LIB_MOUNT_LOG")"
      lib_unregister "$mnt"
      return 1
    fi
  fi
  lib_unregister "$mnt"
}

casfs_remount() { # casfs_remount STORE MNT [ARGS...]
  casfs_unmount "$1" "$2" && casfs_mount "$@"
}

store_status() { # store_status STORE FILE: the offline status as JSON in FILE
  timeout -k 5 120 "$CASFS" store status "$1" --json >"$2" 2>"$WORK/.lib/status.err"
  local rc=$?
  if ((rc != 0)); then
    fail "casfs store status $1 --json" "exit $rc: $(head -c 500 "$WORK/.lib/status.err")"
    return 1
  fi
}

# --- teardown --------------------------------------------------------------------
# Lazily unmounts everything this test still has mounted and kills the daemons.
lib_teardown() {
  local store mnt pid pids p deadline
  [[ -s "$LIB_MOUNTS" ]] || return 0
  while IFS=$'\t' read -r store mnt pid; do
    if lib_is_mounted "$mnt"; then
      echo "teardown: lazily unmounting $mnt" >&2
      timeout 10 fusermount3 -uz "$mnt" >&2 || timeout 10 umount -l "$mnt" >&2
    fi
    pids=$(
      lib_daemon_pids "$store"
      [[ -n "$pid" ]] && echo "$pid"
    )
    pids=$(sort -u <<<"$pids")
    if [[ -n "$pids" ]]; then
      for p in $pids; do kill -0 "$p" 2>/dev/null || continue; echo "teardown: killing daemon $p" >&2; kill -TERM "$p" 2>/dev/null; done
      deadline=$((SECONDS + 5))
      for p in $pids; do
        while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
      done
    fi
    # A daemon killed before the lazy unmount took leaves the mount behind.
    if lib_is_mounted "$mnt"; then
      timeout 10 fusermount3 -uz "$mnt" >&2 || timeout 10 umount -l "$mnt" >&2
    fi
  done <"$LIB_MOUNTS"
  : >"$LIB_MOUNTS"
}

lib_on_exit() {
  local rc=$? p
  trap - EXIT
  trap '' TERM INT HUP
  [[ -n "$LIB_WATCHDOG" ]] && kill -TERM "$LIB_WATCHDOG" 2>/dev/null
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  cd / || true
  if [[ -s "$LIB_MOUNTS" ]]; then
    # Only a test that stopped early gets here: a finished test has unmounted.
    ((rc == 0)) && fail "the test unmounted everything it mounted" "$(cat "$LIB_MOUNTS")"
    lib_teardown
  fi
  # A test that mounts something of its own (a tmpfs, ...) undoes it here.
  if declare -F lib_extra_teardown >/dev/null; then lib_extra_teardown; fi
  if awk -v w="$WORK/" 'index($5, w) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "$LIB_NAME: leaving $WORK behind: something is still mounted under it" >&2
  else
    timeout 300 rm -rf "$WORK"
  fi
  echo "$LIB_PASSED passed, $LIB_FAILED failed"
  if ((LIB_FAILED > 0 && rc == 0)); then rc=1; fi
  exit "$rc"
}
lib_on_signal() {
  fail "$LIB_NAME interrupted by SIG$1"
  exit $((128 + $2))
}
trap lib_on_exit EXIT
trap 'lib_on_signal TERM 15' TERM
trap 'lib_on_signal INT 2' INT
trap 'lib_on_signal HUP 1' HUP

# The watchdog: after LIB_TIMEOUT seconds it kills the daemons (which fails every
# request blocked in the kernel, so stuck commands return), then the test's own child
# processes, then the test, whose EXIT trap cleans up the rest.
lib_watchdog() {
  local sleeper p
  trap - EXIT
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$LIB_TIMEOUT" &
  sleeper=$!
  wait "$sleeper"
  echo "FAIL  watchdog: $LIB_NAME ran longer than ${LIB_TIMEOUT}s; killing its daemons and commands" >&2
  lib_teardown
  for p in $(ps -o pid= --ppid "$LIB_MAIN_PID"); do
    [[ $p == "$BASHPID" ]] || kill -TERM "$p" 2>/dev/null
  done
  kill -TERM "$LIB_MAIN_PID" 2>/dev/null
  exit 0
}
# Started from a subshell so that it is not a job of the test: a bare `wait` in a test
# must not wait for it.
(
  lib_watchdog &
  echo $! >"$WORK/.lib/watchdog.pid"
)
LIB_WATCHDOG=$(cat "$WORK/.lib/watchdog.pid")
