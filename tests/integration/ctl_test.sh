#!/usr/bin/env bash
# casfsctl against real mounts: finding the mount (from a directory inside it, from
# its store, and nothing mounted), status (text and --json), flush, pack while files
# are read, gc, repack, verify (clean, then a damaged pack naming the file that uses
# it, which reads as EIO while the others read fine), jobs, garbage on the socket,
# the socket's permissions and another user refused, a stale socket after a killed
# daemon; then the background packer with small thresholds.
#
#   bash ctl_test.sh /path/to/casfs      (ctest sets CASFS_IO and CASFS_CTL)
#
# CASFS_CTL is the casfsctl binary (default: next to casfs). The tree copied in is
# CASFS_TEST_TREE (default /usr/include/linux, ~750 files).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools setpriv stat cmp dd cp rm grep

CTL=${CASFS_CTL:-$(dirname "$CASFS")/casfsctl}
if [[ ! -x "$CTL" ]]; then
  echo "$LIB_NAME: no casfsctl at $CTL (set CASFS_CTL)" >&2
  exit 2
fi
CTL=$(realpath "$CTL")
SRC=$(realpath "${CASFS_TEST_TREE:-/usr/include/linux}")

ctl() { t "$CTL" "$@"; }
# ctl_json FILE ARGS...: `casfsctl ARGS --json` into FILE.
ctl_json() {
  local out=$1
  shift
  ctl "$@" --json >"$out" 2>"$WORK/ctl.err"
}
# status_of STORE KEY.PATH: one value of the live status.
status_of() {
  ctl_json "$WORK/st.json" status "$1" && json_get "$WORK/st.json" "$2"
}
# expect_output NAME WANT_RC PATTERN CMD...: CMD exits WANT_RC and its output (stdout
# and stderr) matches the extended regex PATTERN.
expect_output() {
  local name=$1 want=$2 pattern=$3 rc
  shift 3
  "$@" >"$LIB_OUT" 2>&1
  rc=$?
  if ((rc == want)) && grep -Eq -- "$pattern" "$LIB_OUT"; then
    pass "$name"
  else
    fail "$name" "command: $*" "want exit $want and output matching /$pattern/" \
      "got exit $rc; output:" "$(head -n 15 "$LIB_OUT")"
    return 1
  fi
}

# A reader that keeps re-reading every file of a tree from the daemon (dropping the
# kernel's cached pages first) and compares each with its expected sha256, until
# STOP exists; it writes "READS MISMATCHES ERRORS" to OUT.
start_reader() { # start_reader DIR SUMS STOP OUT
  python3 - "$@" <<'EOF' &
import hashlib, os, sys, time
root, sums, stop, out = sys.argv[1:5]
expected = []
for line in open(sums):
    digest, name = line.rstrip("\n").split("  ", 1)
    expected.append((os.path.join(root, name), digest))
reads = mismatches = errors = 0
deadline = time.time() + 300
while True:
    for path, digest in expected:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                h = hashlib.sha256()
                while chunk := os.read(fd, 1 << 20):
                    h.update(chunk)
            finally:
                os.close(fd)
            reads += 1
            if h.hexdigest() != digest:
                mismatches += 1
        except OSError:
            errors += 1
    if os.path.exists(stop) or time.time() > deadline:
        break
open(out, "w").write(f"{reads} {mismatches} {errors}\n")
EOF
}

S=$WORK/store
M=$WORK/mnt
tree_sums "$SRC" >"$WORK/src.sums"

section "nothing mounted"
casfs_mkfs "$S" || bail "mkfs"
mkdir -p "$WORK/plain" "$M"
expect_output "a plain directory: one clear line, exit 1" 1 \
  "^casfsctl: no casfs mount at $WORK/plain \(is the daemon running\?\)$" "$CTL" status "$WORK/plain"
expect_output "an unmounted store: the same message" 1 \
  "^casfsctl: no casfs mount at $S \(is the daemon running\?\)$" "$CTL" status "$S"
expect_output "from a directory that is no mount, without MNT" 1 "no casfs mount at $WORK/plain " \
  bash -c 'cd "$1" && "$2" status' _ "$WORK/plain" "$CTL"
expect_output "an unknown command is a usage error (exit 2)" 2 "unknown command 'frobnicate'" \
  "$CTL" frobnicate
expect_output "--threshold out of range is a usage error (exit 2)" 2 "threshold" \
  "$CTL" repack "$S" --threshold 200
expect_output "a bad packer option is refused by casfs mount" 1 "pack_loose_objects=many" \
  timeout 30 "$CASFS" mount "$S" "$M" -o pack_loose_objects=many

section "finding the mount"
casfs_mount "$S" "$M" -o nopacker || bail "mount"
mkdir -p "$M/sub/deeper"
expect_output "from the mount's root, without MNT" 0 "^mount: +$M$" \
  bash -c 'cd "$1" && "$2" status' _ "$M" "$CTL"
check "from a directory deep inside the mount, without MNT (--json)" \
  bash -c 'cd "$1" && "$2" status --json >"$3"' _ "$M/sub/deeper" "$CTL" "$WORK/deep.json"
expect_eq "  ... names the mount" "$M" "$(json_get "$WORK/deep.json" mountpoint)"
expect_eq "  ... and its store" "$S" "$(json_get "$WORK/deep.json" store)"
check "from the store directory" ctl_json "$WORK/bystore.json" status "$S"
expect_eq "  ... names the mount" "$M" "$(json_get "$WORK/bystore.json" mountpoint)"
check "from a path inside the mount given as MNT" ctl status "$M/sub"

section "the socket"
expect_eq "control.sock is a socket of mode 0600" "socket 600" "$(stat -c '%F %a' "$S/run/control.sock")"
if ((EUID == 0)); then
  # Let another user reach the socket's directory, so that the socket's own mode and
  # then the daemon's SO_PEERCRED check are what refuse it.
  chmod 711 "$WORK" "$S" "$S/run"
  expect_output "another user is refused by the socket's mode" 1 "permission denied" \
    t setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" status "$S"
  chmod 666 "$S/run/control.sock"
  expect_output "another user is refused by the daemon even when the socket is open to all" 1 \
    "permission denied: only root may control this mount" \
    t setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" status "$S"
  chmod 600 "$S/run/control.sock"
  chmod 700 "$WORK" "$S/run"
  chmod 755 "$S"
else
  echo "skip  another user (needs root for setpriv)"
fi
cat >"$WORK/garbage.py" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'hello\n{"cmd": 42}\n[1,2]\n{"cmd":"launch"}\n\xff\xfe{{{\n{"cmd":"status"}\n')
s.shutdown(socket.SHUT_WR)
replies = [json.loads(line) for line in s.makefile("rb")]
bad = [r for r in replies[:5] if r.get("ok") is False and isinstance(r.get("error"), str)]
good = replies[5].get("ok") is True and "status" in replies[5]
print(len(replies), len(bad), good)
EOF
expect_eq "garbage requests each get an error line, and the connection goes on" "6 5 True" \
  "$(t python3 "$WORK/garbage.py" "$S/run/control.sock" 2>&1)"
check "the daemon survives garbage" ctl status "$M"

section "status and flush"
check "cp -a of $SRC into the mount" t cp -a "$SRC" "$M/tree" || bail "cp"
mkdir -p "$M/junk"
for i in 1 2 3 4 5 6 7 8; do dd if=/dev/urandom of="$M/junk/r$i" bs=64K count=4 status=none; done
dd if=/dev/urandom of="$M/big" bs=1M count=48 status=none
check "flush" ctl flush "$M"
check "status --json" ctl_json "$WORK/status.json" status "$M"
expect_eq "status --json has casfs store status's keys and the filesystem's" \
  "bytes cache cache_hit_rate compression_ratio dedup_ratio intake_packs io_engine jobs_running logical_bytes mountpoint objects packer packs store" \
  "$(python3 -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1])))))' "$WORK/status.json")"
expect_eq "  objects has loose, intake, packed, total, unreferenced" "intake loose packed total unreferenced" \
  "$(python3 -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["objects"])))' "$WORK/status.json")"
expect_eq "  bytes has raw, stored, loose, intake, packed_raw, packed_stored, pack_files, dead" \
  "dead intake loose pack_files packed_raw packed_stored raw stored" \
  "$(python3 -c 'import json,sys; print(" ".join(sorted(json.load(open(sys.argv[1]))["bytes"])))' "$WORK/status.json")"
expect_eq "  nothing read yet: cache_hit_rate is null" "None" "$(json_get "$WORK/status.json" cache_hit_rate)"
expect_eq "  the cache's default size" $((64 << 20)) "$(json_get "$WORK/status.json" cache.capacity)"
expect_eq "  the packer is off (nopacker)" "off" "$(json_get "$WORK/status.json" packer.state)"
# The big file's write-outs are batches of hundreds of new chunks: intake packs.
expect_lt "  flushed files are objects, loose or in intake packs" 0 \
  "$(($(json_get "$WORK/status.json" objects.loose) + $(json_get "$WORK/status.json" objects.intake)))"
expect_lt "  ... the big file's chunks in intake packs" 0 "$(json_get "$WORK/status.json" objects.intake)"
expect_lt "  ... which are packs" 0 "$(json_get "$WORK/status.json" intake_packs)"
expect_le "  logical bytes cover the raw bytes" "$(json_get "$WORK/status.json" bytes.raw)" \
  "$(json_get "$WORK/status.json" logical_bytes)"
expect_output "status as text" 0 "^objects: .*loose.*packed" ctl status "$M"
expect_output "  ... shows ratios, packer, jobs and cache" 0 "^cache: +no reads yet; 0 B of 64\.0 MiB held$" ctl status "$M"

section "pack while files are read"
# Nothing cached in the kernel, nor in the daemon (cache=0): every read goes to the disk.
casfs_remount "$S" "$M" -o nopacker,cache=0 || bail "remount"
tree_sums "$M" >"$WORK/mnt.sums"
rm -f "$WORK/stop"
start_reader "$M" "$WORK/mnt.sums" "$WORK/stop" "$WORK/reader.out"
reader=$!
expect_output "pack --wait packs and says how much" 0 "^pack: packed [0-9]+ objects" ctl pack --wait "$M"
touch "$WORK/stop"
wait "$reader"
read -r reads mismatches errors <"$WORK/reader.out"
expect_lt "the reader read files while packing" 0 "$reads"
expect_eq "every read during packing was byte-identical (mismatches, errors)" "0 0" "$mismatches $errors"
check "status after pack" ctl_json "$WORK/status.json" status "$M"
expect_eq "  no loose objects left" 0 "$(json_get "$WORK/status.json" objects.loose)"
expect_eq "  nothing left in intake packs" 0 "$(json_get "$WORK/status.json" objects.intake)"
expect_eq "  and no intake packs" 0 "$(json_get "$WORK/status.json" intake_packs)"
expect_lt "  packed objects" 0 "$(json_get "$WORK/status.json" objects.packed)"
expect_lt "  at least one pack" 0 "$(json_get "$WORK/status.json" packs)"
casfs_remount "$S" "$M" -o nopacker || bail "remount"
(cd "$M" && tree_sums tree) >"$WORK/tree.sums"
expect_same "after packing (and a remount) the tree reads back byte-identical" "$WORK/src.sums" "$WORK/tree.sums"
check "status after reading the tree" ctl_json "$WORK/status.json" status "$M"
expect_lt "  chunks were read through the cache" 0 "$(json_get "$WORK/status.json" cache.misses)"
expect_lt "  and some kept there" 0 "$(json_get "$WORK/status.json" cache.bytes)"
expect_output "  the text shows the hit rate" 0 "^cache: +[0-9.]+% hit rate of [1-9][0-9]* object reads; " \
  ctl status "$M"
casfs_remount "$S" "$M" -o nopacker,cache=0 || bail "remount with cache=0"
(cd "$M" && tree_sums tree) >"$WORK/tree.sums"
expect_same "with cache=0 the tree reads back byte-identical" "$WORK/src.sums" "$WORK/tree.sums"
expect_output "  and status says the cache is off" 0 "^cache: +off \(mounted with cache=0\)$" \
  ctl status "$M"
expect_eq "  with no hit rate" "None" "$(status_of "$M" cache_hit_rate)"
casfs_remount "$S" "$M" -o nopacker || bail "remount"

section "gc and repack"
total_before=$(status_of "$M" objects.total)
check "rm of files nothing else shares" rm -rf "$M/junk"
check "flush" ctl flush "$M"
expect_output "gc --wait drops their objects" 0 "^gc: removed [0-9]+ loose objects, dropped [1-9][0-9]* packed" \
  ctl gc --wait "$M"
check "status after gc" ctl_json "$WORK/status.json" status "$M"
expect_lt "  fewer objects than before" "$(json_get "$WORK/status.json" objects.total)" "$total_before"
expect_lt "  dead bytes in packs" 0 "$(json_get "$WORK/status.json" bytes.dead)"
expect_output "repack --wait --threshold 0 rewrites the packs" 0 "^repack: repacked [1-9]" \
  ctl repack --wait --threshold 0 "$M"
expect_eq "no dead bytes after repack" 0 "$(status_of "$M" bytes.dead)"
casfs_remount "$S" "$M" -o nopacker || bail "remount"
(cd "$M" && tree_sums tree) >"$WORK/tree.sums"
expect_same "after gc and repack the tree reads back byte-identical" "$WORK/src.sums" "$WORK/tree.sums"

section "verify and jobs"
expect_output "verify --wait on a clean store: exit 0" 0 "^verify: verified [0-9]+ objects .*all good" \
  ctl verify --wait "$M"
expect_output "pack without --wait prints the job's id" 0 "^job [0-9]+: pack (running|done)" ctl pack "$M"
job=$(sed -n 's/^job \([0-9]*\):.*/\1/p' "$LIB_OUT")
for _ in $(seq 100); do
  ctl_json "$WORK/jobs.json" jobs "$M" &&
    [[ $(python3 -c 'import json,sys; print(next(j["state"] for j in json.load(open(sys.argv[1])) if j["id"] == int(sys.argv[2])))' "$WORK/jobs.json" "$job") == done ]] && break
  sleep 0.1
done
expect_eq "jobs --json lists that job done" "done" \
  "$(python3 -c 'import json,sys; print(next(j["state"] for j in json.load(open(sys.argv[1])) if j["id"] == int(sys.argv[2])))' "$WORK/jobs.json" "$job")"
expect_eq "jobs lists this daemon's jobs, in order, all done" "verify:done pack:done" \
  "$(python3 -c 'import json,sys; print(" ".join(j["kind"] + ":" + j["state"] for j in json.load(open(sys.argv[1]))))' "$WORK/jobs.json")"
expect_output "jobs as text" 0 "^[0-9]+ +verify +done +[0-9]+/[0-9]+" ctl jobs "$M"

section "a damaged pack"
# A file of 2 MiB packed last has its records in the last ~2 MiB of the newest pack:
# flip a byte in them.
damage_newest_pack() {
  local pack size
  pack=$(ls "$S/packs" | sort -n | tail -n 1)
  size=$(stat -c %s "$S/packs/$pack")
  python3 - "$S/packs/$pack" $((size - 300000)) <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x40]))
EOF
}
dd if=/dev/urandom of="$M/victim" bs=1M count=2 status=none
check "flush" ctl flush "$M"
expect_output "pack the victim (alone: everything else is packed)" 0 "^pack: packed [1-9]" ctl pack --wait "$M"
casfs_unmount "$S" "$M" || bail "unmount"
damage_newest_pack
casfs_mount "$S" "$M" -o nopacker || bail "mount"
expect_output "verify --wait exits 1 and names the file using the bad object" 1 "used by $M/victim$" \
  ctl verify --wait "$M"
expect_output "  ... and counts the problem" 1 "^verify: [1-9][0-9]* problems? in" ctl verify --wait "$M"
expect_output "reading the damaged file fails with EIO" 1 "Input/output error" t cat "$M/victim"
(cd "$M" && tree_sums tree) >"$WORK/tree.sums"
expect_same "the other files read fine" "$WORK/src.sums" "$WORK/tree.sums"
expect_output "jobs shows the failed verify as done (it ran; it found problems)" 0 "verify +done .*problem" \
  ctl jobs "$M"

# The same damage while mounted, to a file the daemon has just read and so holds in
# its cache: verify reads the disk, finds it, and drops the cached copy.
dd if=/dev/urandom of="$M/victim2" bs=1M count=2 status=none
check "flush" ctl flush "$M"
expect_output "pack victim2" 0 "^pack: packed [1-9]" ctl pack --wait "$M"
sync
echo 3 >/proc/sys/vm/drop_caches
check "victim2 reads while intact" t cat "$M/victim2"
expect_lt "  through the daemon's cache" 0 "$(status_of "$M" cache.bytes)"
damage_newest_pack
echo 3 >/proc/sys/vm/drop_caches
expect_output "verify on the live mount finds the damage" 1 "used by $M/victim2$" ctl verify --wait "$M"
expect_output "after that, reading victim2 fails with EIO, cache or not" 1 "Input/output error" \
  t cat "$M/victim2"

section "a killed daemon's stale socket"
pid=$(head -c 32 "$S/run/lock" | tr -dc 0-9)
kill -KILL "$pid"
for _ in $(seq 100); do lib_lock_free "$S" && break; sleep 0.1; done
timeout 10 fusermount3 -uz "$M"
lib_unregister "$M"
expect_eq "the socket is left behind" "socket" "$(stat -c %F "$S/run/control.sock" 2>&1)"
expect_output "no daemon behind it: the same one-line message" 1 \
  "^casfsctl: no casfs mount at $S \(is the daemon running\?\)$" "$CTL" status "$S"
casfs_mount "$S" "$M" -o nopacker || bail "mount"
check "a new daemon replaces the stale socket" ctl status "$M"
casfs_unmount "$S" "$M"
expect_eq "the socket is gone after unmount" "gone" "$([[ -e $S/run/control.sock ]] && echo there || echo gone)"
expect_output "after unmount, from the old mountpoint" 1 "^casfsctl: no casfs mount at $M " \
  bash -c 'cd "$1" && "$2" status' _ "$M" "$CTL"

section "the background packer"
S2=$WORK/store2
M2=$WORK/mnt2
casfs_mkfs "$S2" || bail "mkfs"
casfs_mount "$S2" "$M2" -o pack_loose_objects=50,pack_age=1 || bail "mount with packer options"
check "status shows the packer's thresholds" ctl_json "$WORK/p.json" status "$M2"
expect_eq "  loose_objects and age" "50 1.0" \
  "$(json_get "$WORK/p.json" packer.thresholds.loose_objects) $(json_get "$WORK/p.json" packer.thresholds.age_seconds)"
check "cp -a of $SRC into the mount" t cp -a "$SRC" "$M2/tree"
# Closed files are written out by the flusher a moment later; until then "no loose
# objects" would be true before the copy's objects exist.
check "flush" ctl flush "$M2"
deadline=$((SECONDS + 60))
until [[ $(status_of "$M2" objects.loose) == 0 && $(status_of "$M2" objects.intake) == 0 &&
  $(status_of "$M2" objects.packed) -gt 0 ]]; do
  ((SECONDS < deadline)) || break
  sleep 0.5
done
check "status" ctl_json "$WORK/p.json" status "$M2"
expect_eq "the packer packed everything by itself (loose objects left)" 0 "$(json_get "$WORK/p.json" objects.loose)"
expect_eq "  (objects left in intake packs)" 0 "$(json_get "$WORK/p.json" objects.intake)"
expect_lt "  packed objects" 0 "$(json_get "$WORK/p.json" objects.packed)"
expect_lt "  packer runs" 0 "$(json_get "$WORK/p.json" packer.runs)"
expect_eq "  its last run succeeded" "None" "$(json_get "$WORK/p.json" packer.last_run.error)"
(cd "$M2" && tree_sums tree) >"$WORK/tree2.sums"
expect_same "the files read back byte-identical" "$WORK/src.sums" "$WORK/tree2.sums"
casfs_remount "$S2" "$M2" -o pack_loose_objects=50,pack_age=1 || bail "remount"
(cd "$M2" && tree_sums tree) >"$WORK/tree2.sums"
expect_same "  ... and after a remount" "$WORK/src.sums" "$WORK/tree2.sums"
casfs_unmount "$S2" "$M2"
finish
