#!/usr/bin/env bash
# Where the daemon's messages go, with a real daemon and a real /dev/log:
#   1. a daemonized `casfs mount` (neither -f nor logfile=) logs to syslog: datagrams
#      on /dev/log, "<30>" (facility daemon, severity info), tagged "casfs[PID]:" with
#      the daemon's pid, "serving STORE on MNT" once mounted and "MNT unmounted; ..."
#      after `fusermount3 -u`;
#   2. with -o loglevel=error none of those info messages is sent;
#   3. with -f the messages go to stderr, and nothing to syslog.
#
#   bash syslog_test.sh /path/to/casfs      (ctest sets CASFS_IO)
#
# Each case runs in a private mount namespace (unshare -m) whose /dev is a tmpfs
# holding bind mounts of the host's /dev entries, except for /dev/log: that is a unix
# datagram socket on which a small listener appends every datagram it receives to a
# file. The host's /dev is never written to, whether or not it has a /dev/log, and
# every mount of a case (its /dev, the FUSE mount) lives and dies with its namespace:
# mount, file I/O and unmount all happen inside it. Each case's store is registered
# with lib.sh, so that a case that stops early has its daemon killed on exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools grep cmp

if ! command -v unshare >/dev/null 2>&1; then
  echo "$LIB_NAME: skipped: no unshare (util-linux) to make a private mount namespace"
  exit 77
fi
if ! out=$(timeout 10 unshare -m --propagation private true 2>&1); then
  echo "$LIB_NAME: skipped: cannot make a private mount namespace: $out"
  exit 77
fi

# What the host has at /dev/log (usually nothing here): the same afterwards.
dev_log_state() {
  if [[ -e /dev/log || -L /dev/log ]]; then stat -c '%F %i %Y' /dev/log; else echo absent; fi
}
DEV_LOG_BEFORE=$(dev_log_state)

# --- the part that runs inside the namespace ---------------------------------------
# inner.sh MODE CASFS STORE MNT DIR [MOUNT ARGS...]: MODE is "daemon" (`casfs mount`
# daemonizes) or "foreground" (-f, in the background of this script). Leaves in DIR:
#   datagrams     every datagram received on /dev/log, one a line
#   pid           the daemon's pid (from STORE/run/lock)
#   io            "ok" once a file written on the mount read back the same
#   stderr.log    the foreground daemon's stderr; foreground.rc its exit status
# and exits non-zero, saying why, when a step of its own failed.
cat >"$WORK/inner.sh" <<'EOF'
set -uo pipefail
mode=$1 casfs=$2 store=$3 mnt=$4 dir=$5
shift 5
nsdev=$dir/dev
stop=$dir/listener.stop
listener="" daemon="" fg_pid=""

say() { echo "inner: $*"; }
die() {
  echo "inner: $*" >&2
  exit 1
}
is_mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }
lock_free() { [[ ! -e "$store/run/lock" ]] || timeout 5 flock -n "$store/run/lock" true 2>/dev/null; }

# Whatever happens, nothing of this namespace outlives it: the mount goes, the daemon
# and the listener end (the namespace, and its mounts, die with its last process).
cleanup() {
  local rc=$? p deadline
  trap - EXIT
  : >"$stop" 2>/dev/null
  if is_mounted "$mnt"; then
    say "cleanup: lazily unmounting $mnt"
    timeout 10 fusermount3 -uz "$mnt" || timeout 10 umount -l "$mnt"
  fi
  for p in $fg_pid $daemon; do
    kill -0 "$p" 2>/dev/null || continue
    say "cleanup: stopping daemon $p"
    kill -TERM "$p" 2>/dev/null
    deadline=$((SECONDS + 5))
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [[ -n "$listener" ]]; then
    deadline=$((SECONDS + 10))
    while kill -0 "$listener" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$listener" 2>/dev/null
    wait "$listener" 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT

# A /dev for this namespace: a tmpfs with the host's entries bound in, but no log.
mkdir -p "$nsdev" || die "mkdir $nsdev"
mount -t tmpfs -o mode=0755,size=1m casfs-test-dev "$nsdev" || die "cannot mount a tmpfs on $nsdev"
shopt -s nullglob dotglob
for entry in /dev/*; do
  name=${entry#/dev/}
  [[ $name == log ]] && continue
  if [[ -L $entry ]]; then
    cp -P "$entry" "$nsdev/$name"
  elif [[ -d $entry ]]; then
    mkdir "$nsdev/$name" && mount --rbind "$entry" "$nsdev/$name"
  else
    : >"$nsdev/$name" && mount --bind "$entry" "$nsdev/$name"
  fi || die "cannot bind /dev/$name into $nsdev"
done
shopt -u nullglob dotglob

# The listener: binds DIR/dev/log, appends each datagram (trailing NULs and newlines
# dropped) as a line, and once STOP exists leaves as soon as nothing came for 0.2 s.
# It also leaves when its parent is gone or after 10 minutes, so it never lingers.
python3 - "$nsdev/log" "$dir/datagrams" "$stop" "$dir/listener.ready" <<'PY' &
import os, socket, sys, time
path, out, stop, ready = sys.argv[1:5]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.settimeout(0.2)
parent = os.getppid()
deadline = time.monotonic() + 600
with open(out, "ab") as f:
    open(ready, "w").close()
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if os.path.exists(stop) or os.getppid() != parent or time.monotonic() > deadline:
                break
            continue
        f.write(data.rstrip(b"\0\n").replace(b"\n", b"\\n") + b"\n")
        f.flush()
PY
listener=$!
deadline=$((SECONDS + 20))
until [[ -e "$dir/listener.ready" ]]; do
  kill -0 "$listener" 2>/dev/null || die "the listener on $nsdev/log exited"
  ((SECONDS < deadline)) || die "the listener did not start within 20 s"
  sleep 0.05
done
mount --move "$nsdev" /dev || die "cannot move $nsdev onto /dev"
[[ -S /dev/log ]] || die "/dev/log is not the listener's socket"
[[ -c /dev/fuse && -c /dev/null ]] || die "/dev/fuse or /dev/null missing from this namespace's /dev"
say "/dev/log is a socket bound by listener $listener"

mkdir -p "$mnt"
if [[ $mode == foreground ]]; then
  "$casfs" mount -f "$store" "$mnt" "$@" >"$dir/stdout.log" 2>"$dir/stderr.log" </dev/null &
  fg_pid=$!
else
  timeout -k 5 60 "$casfs" mount "$store" "$mnt" "$@" >"$dir/mount.out" 2>&1 </dev/null ||
    die "casfs mount $store $mnt $* exited $?: $(tail -n 5 "$dir/mount.out")"
fi
deadline=$((SECONDS + 20))
until is_mounted "$mnt" && timeout 10 mountpoint -q "$mnt"; do
  if [[ -n "$fg_pid" ]] && ! kill -0 "$fg_pid" 2>/dev/null; then
    wait "$fg_pid"
    die "casfs mount -f exited ($?) before the mount was live: $(tail -n 5 "$dir/stderr.log")"
  fi
  ((SECONDS < deadline)) || die "the mount on $mnt was not live within 20 s"
  sleep 0.1
done
daemon=$(head -c 32 "$store/run/lock" 2>/dev/null | tr -dc 0-9)
[[ -n "$daemon" ]] && kill -0 "$daemon" 2>/dev/null || die "no live daemon pid in $store/run/lock: [$daemon]"
echo "$daemon" >"$dir/pid"
say "mounted $mnt; daemon $daemon"

# One file written and read back through the mount.
printf 'written through the %s mount\n' "$mode" >"$dir/want"
timeout 30 cp "$dir/want" "$mnt/file" || die "cannot write $mnt/file"
timeout 30 cat "$mnt/file" >"$dir/got" || die "cannot read $mnt/file"
cmp "$dir/want" "$dir/got" || die "$mnt/file read back differently"
echo ok >"$dir/io"

deadline=$((SECONDS + 10))
until out=$(timeout -k 5 30 fusermount3 -u "$mnt" 2>&1); do
  [[ $out == *[Bb]usy* ]] && ((SECONDS < deadline)) || die "fusermount3 -u $mnt: $out"
  sleep 0.2
done
deadline=$((SECONDS + 60))
until lock_free; do
  ((SECONDS < deadline)) || die "daemon $daemon still holds $store/run/lock 60 s after unmount"
  sleep 0.1
done
if [[ -n "$fg_pid" ]]; then
  deadline=$((SECONDS + 30))
  while kill -0 "$fg_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || die "casfs mount -f still running 30 s after letting go of the lock"
    sleep 0.1
  done
  wait "$fg_pid"
  echo $? >"$dir/foreground.rc"
fi
say "unmounted; daemon $daemon gone"

# A datagram of our own, sent after the daemon is gone: if it arrives, the listener
# was receiving for the whole life of the mount.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect("/dev/log")
s.send(sys.argv[1].encode())' "<13>casfs-test-probe ${dir##*/}" || die "cannot send the probe to /dev/log"
: >"$stop"
wait "$listener"
listener=""
say "done"
EOF

# run_case NAME MODE [MOUNT ARGS...]: a fresh store, then inner.sh in its own mount
# namespace; the case's files are in $WORK/NAME.
run_case() {
  local name=$1 mode=$2 dir rc
  shift 2
  dir=$WORK/$name
  mkdir -p "$dir"
  casfs_mkfs "$dir/store" || return 1
  lib_register "$dir/store" "$dir/mnt" ""
  # In the background and waited for, so that a signal to the test is acted on at once
  # (its EXIT trap ends this job, and lib.sh's teardown the daemon).
  timeout -k 10 300 unshare -m --propagation private \
    bash "$WORK/inner.sh" "$mode" "$CASFS" "$dir/store" "$dir/mnt" "$dir" "$@" \
    >"$dir/inner.out" 2>&1 </dev/null &
  wait $!
  rc=$?
  if ((rc == 0)); then
    pass "$name: mount, write and read a file, unmount (in a private mount namespace)"
    lib_unregister "$dir/mnt"
  else
    fail "$name: mount, write and read a file, unmount (in a private mount namespace)" \
      "exit $rc; output (last 15 lines):" "$(tail -n 15 "$dir/inner.out")"
    # The namespace stops its daemon on the way out; one that is still there is left
    # to lib.sh's teardown.
    if [[ -z "$(lib_daemon_pids "$dir/store")" ]] && lib_lock_free "$dir/store"; then
      lib_unregister "$dir/mnt"
    fi
  fi
  expect_eq "$name: the file read back through the mount" ok "$(cat "$dir/io" 2>/dev/null)"
  # The namespace is gone, and with it everything it mounted.
  check "$name: nothing of its namespace is mounted on the host" \
    bash -c '! grep -F " $1/" /proc/self/mountinfo' _ "$dir"
  expect_eq "$name: the host's /dev/log is as it was" "$DEV_LOG_BEFORE" "$(dev_log_state)"
  ((rc == 0))
}

# expect_datagram NAME FILE PREFIX SUFFIX: some line of FILE starts with PREFIX and
# ends with SUFFIX (both taken literally).
expect_datagram() {
  local line
  if [[ -f "$2" ]]; then
    while IFS= read -r line; do
      if [[ $line == "$3"* && $line == *"$4" ]]; then
        pass "$1"
        return 0
      fi
    done <"$2"
  fi
  fail "$1" "no line [$3...$4]; got (first 10 lines):" "$(head -n 10 "$2" 2>&1)"
  return 1
}
# expect_no_datagram NAME FILE TEXT: no line of FILE contains TEXT.
expect_no_datagram() {
  if grep -qF -- "$3" "$2"; then
    fail "$1" "received: $(grep -F -- "$3" "$2" | head -n 3)"
    return 1
  fi
  pass "$1"
}
# line_of FILE TEXT: the number of the first line of FILE containing TEXT.
line_of() { grep -nF -- "$2" "$1" | head -n 1 | cut -d: -f1; }
# datagrams_from_casfs FILE: the lines that are not the probe.
datagrams_from_casfs() { grep -v '^<13>casfs-test-probe ' "$1" 2>/dev/null; }
PROBE='<13>casfs-test-probe'

# --- 1. a daemonized mount logs to syslog ------------------------------------------
section "a daemonized mount logs to /dev/log"
d=$WORK/daemon
if run_case daemon daemon; then
  pid=$(cat "$d/pid")
  expect_datagram "daemon: the listener received its own probe after the unmount" "$d/datagrams" "$PROBE" ""
  # "<30>Mmm dd hh:mm:ss casfs[PID]: MESSAGE": facility daemon (3 << 3) + info (6).
  expect_datagram "daemon: '<30>... casfs[$pid]: serving STORE on MNT' at mount" "$d/datagrams" \
    "<30>" " casfs[$pid]: serving $d/store on $d/mnt"
  expect_datagram "daemon: '<30>... casfs[$pid]: MNT unmounted; ...' after fusermount3 -u" "$d/datagrams" \
    "<30>" " casfs[$pid]: $d/mnt unmounted; writing out and closing the store"
  expect_lt "daemon: the mount message comes before the unmount message" \
    "$(line_of "$d/datagrams" ": serving ")" "$(line_of "$d/datagrams" " unmounted; ")"
  expect_eq "daemon: every datagram is tagged casfs[$pid]: (none from another process)" "" \
    "$(datagrams_from_casfs "$d/datagrams" | grep -vF "casfs[$pid]: ")"
fi

# --- 2. loglevel=error keeps info messages out of syslog ---------------------------
section "-o loglevel=error sends no info messages"
d=$WORK/quiet
if run_case quiet daemon -o loglevel=error; then
  expect_datagram "quiet: the listener received its own probe after the unmount" "$d/datagrams" "$PROBE" ""
  expect_no_datagram "quiet: no 'serving' message" "$d/datagrams" "serving"
  expect_no_datagram "quiet: no 'unmounted' message" "$d/datagrams" "unmounted"
  expect_no_datagram "quiet: nothing at severity info (<30>)" "$d/datagrams" "<30>"
  expect_eq "quiet: no datagram from casfs at all" "" "$(datagrams_from_casfs "$d/datagrams")"
fi

# --- 3. -f logs to stderr, not to syslog -------------------------------------------
section "-f logs to stderr, not to /dev/log"
d=$WORK/foreground
if run_case foreground foreground; then
  expect_eq "foreground: casfs mount -f exits 0 after unmount" 0 "$(cat "$d/foreground.rc" 2>/dev/null)"
  expect_datagram "foreground: the listener received its own probe after the unmount" "$d/datagrams" "$PROBE" ""
  expect_eq "foreground: no datagram from casfs" "" "$(datagrams_from_casfs "$d/datagrams")"
  expect_datagram "foreground: 'casfs: serving STORE on MNT' on stderr" "$d/stderr.log" \
    "casfs: serving $d/store on $d/mnt" ""
  expect_datagram "foreground: 'casfs: MNT unmounted; ...' on stderr" "$d/stderr.log" \
    "casfs: $d/mnt unmounted; writing out and closing the store" ""
fi

finish
