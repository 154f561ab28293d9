#!/usr/bin/env bash
# Bad input that `casfs mount` and the store must survive: a store of a newer format
# version, a store directory on a read-only filesystem, an index (meta/) copied from
# another store, a truncated pack, a deleted loose object. Each ends in a one-line
# error and a non-zero exit, or EIO for the affected file only, and leaves the bytes
# stored unchanged.
#
# Covered elsewhere: a missing store, a directory that is not a store, a second mount
# of a mounted store and a missing mountpoint (posix_test.sh); garbage on the control
# socket (ctl_test.sh); a newer version, a missing store and not-a-store for the store
# commands (tests/cli/store_cli_test.sh); fsck of a store with a deleted loose object
# (tests/cli/fsck_cli_test.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools truncate mount umount

# store_sums STORE [DIR...]: sha256 of every file of the store (or of its DIRs), but
# not run/ (the lock and the control socket) nor LMDB's lock.mdb (its reader table),
# which any run touches without changing what is stored.
store_sums() {
  local store=$1
  shift
  (cd "$store" && find "${@:-.}" -path ./run -prune -o -type f ! -name lock.mdb -print0 |
    sort -z | xargs -0 -r sha256sum)
}
# refused NAME CMD...: CMD exits non-zero with exactly one line of output.
refused() {
  local name=$1 rc
  shift
  timeout -k 5 60 "$@" >"$WORK/out" 2>&1 </dev/null
  rc=$?
  if ((rc != 0)) && [[ $(wc -l <"$WORK/out") -eq 1 ]]; then
    pass "$name: exit $rc: $(cat "$WORK/out")"
  else
    fail "$name" "want a non-zero exit and one line; exit $rc, output:" "$(head -n 10 "$WORK/out")"
  fi
}
# not_mounted MNT: a refused mount left nothing mounted (and if it did, undo it).
not_mounted() {
  if lib_is_mounted "$1"; then
    fail "nothing is mounted at $1 after a refused mount"
    timeout 10 fusermount3 -uz "$1"
  else
    pass "nothing is mounted at $1 after the refusal"
  fi
}
# read_fails NAME FILE: reading FILE fails with EIO.
read_fails_eio() {
  local out
  out=$(t cat "$2" 2>&1 >/dev/null)
  if [[ $? -ne 0 && $out == *"Input/output error"* ]]; then
    pass "$1"
  else
    fail "$1" "want EIO, got: ${out:-a successful read}"
  fi
}
# A store with five single-chunk files (each below the 16 KiB minimum chunk, so one
# object each, named by the file's sha256) and their sums in $WORK/NAME.sums. The
# objects are loose files (intake=0), for the checks that damage one.
make_store() { # make_store STORE MNT
  casfs_mkfs "$1" || bail "mkfs $1"
  casfs_mount "$1" "$2" -o intake=0 || bail "mount $1"
  local i
  for i in 1 2 3 4 5; do head -c $((4000 + i * 1000)) /dev/urandom >"$2/f$i"; done
  tree_sums "$2" >"$1.sums"
  casfs_unmount "$1" "$2" || bail "unmount $1"
}
mnt=$WORK/mnt
mkdir -p "$mnt"

# --- a store of a newer format version -------------------------------------------
section "newer format version"
V=$WORK/newer
make_store "$V" "$mnt"
python3 -c '
import json, sys
path = sys.argv[1] + "/casfs.json"
config = json.load(open(path))
config["version"] = int(config["version"]) + 1
json.dump(config, open(path, "w"))' "$V"
before=$(store_sums "$V")
refused "mount of a store of a newer format version is refused" "$CASFS" mount "$V" "$mnt"
check "  ... saying it is newer" grep -q "newer" "$WORK/out"
not_mounted "$mnt"
refused "fsck of it is refused too" "$CASFS" fsck "$V"
expect_eq "  ... and the store is unchanged" "$before" "$(store_sums "$V")"

# --- a store on a read-only filesystem ----------------------------------------------
section "read-only store directory"
R=$WORK/readonly-src
make_store "$R" "$mnt"
RO=$WORK/readonly
mkdir -p "$RO"
lib_extra_teardown() { mountpoint -q "$RO" && umount -l "$RO"; }
if mount --bind "$R" "$RO" 2>/dev/null && mount -o remount,bind,ro "$RO" 2>/dev/null; then
  before=$(store_sums "$R")
  refused "mount of a store on a read-only filesystem is refused" "$CASFS" mount "$RO" "$mnt"
  check "  ... saying it is read-only" grep -qi "read-only" "$WORK/out"
  not_mounted "$mnt"
  refused "casfs store add to it is refused" "$CASFS" store add "$RO" "$WORK/newer.sums"
  expect_eq "  ... and the store is unchanged" "$before" "$(store_sums "$R")"
  umount "$RO"
else
  echo "(cannot make a read-only bind mount here: not root? skipping this section)"
fi

# --- an index copied from another store ---------------------------------------------
section "index from another store"
A=$WORK/store-a B=$WORK/store-b
make_store "$A" "$mnt"
make_store "$B" "$mnt"
mv "$A/meta" "$WORK/meta-a"
cp -a "$B/meta" "$A/meta"
before=$(store_sums "$A")
refused "mount with another store's meta/ is refused" "$CASFS" mount "$A" "$mnt"
check "  ... saying it belongs to another store" grep -q "another store" "$WORK/out"
not_mounted "$mnt"
refused "casfs store ls of it is refused" "$CASFS" store ls "$A"
refused "casfs store pack of it is refused" "$CASFS" store pack "$A"
expect_eq "  ... and the store is unchanged, index included" "$before" "$(store_sums "$A")"
rm -rf "$A/meta" && mv "$WORK/meta-a" "$A/meta"
casfs_mount "$A" "$mnt" || bail "mount with its own meta/ back"
tree_sums "$mnt" >"$WORK/a.now"
expect_same "with its own meta/ back every file reads back" "$A.sums" "$WORK/a.now"
casfs_unmount "$A" "$mnt"

# --- a truncated pack ------------------------------------------------------------------
section "truncated pack"
P=$WORK/packed
make_store "$P" "$mnt"
check "casfs store pack" timeout 120 "$CASFS" store pack "$P"
pack=$(find "$P/packs" -name '*.pack' | head -n 1)
# The last record of the pack loses its second half: the file it holds is the victim.
read -r cut victim_id < <(python3 - "$pack" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
at, last = 16, None
while at + 72 <= len(data):
    last = at
    at += 72 + int.from_bytes(data[at + 48:at + 56], "little")
print(last + (at - last) // 2, data[last + 8:last + 40].hex())
PY
)
victim=$(awk -v id="$victim_id" '$1 == id { sub("^\\./", "", $2); print $2 }' "$P.sums")
[[ -n "$victim" ]] || bail "the pack's last record is none of the files (id $victim_id)"
truncate -s "$cut" "$pack"
before=$(store_sums "$P" loose packs)
casfs_mount "$P" "$mnt" || bail "mount of a store with a truncated pack"
read_fails_eio "reading the file whose object was cut off fails with EIO" "$mnt/$victim"
grep -v " \./$victim\$" "$P.sums" >"$WORK/p.want"
tree_sums "$mnt" "$victim" >"$WORK/p.now"
expect_same "every other file reads back" "$WORK/p.want" "$WORK/p.now"
check "the victim can still be listed and stat'ed" stat "$mnt/$victim"
casfs_unmount "$P" "$mnt"
expect_eq "the mount changed no pack or loose object" "$before" "$(store_sums "$P" loose packs)"
check_fails "casfs store verify reports the damage" timeout 120 "$CASFS" store verify "$P"
cp "$LIB_OUT" "$WORK/verify.out"
check "  ... naming the object" grep -q "$victim_id" "$WORK/verify.out"
expect_eq "  ... and changes nothing" "$before" "$(store_sums "$P" loose packs)"

# --- a deleted loose object -------------------------------------------------------------
section "deleted loose object"
L=$WORK/loose
make_store "$L" "$mnt"
victim=f3
victim_id=$(awk '$2 == "./f3" { print $1 }' "$L.sums")
[[ -f "$L/loose/${victim_id:0:2}/${victim_id:2}" ]] || bail "f3's object is not a loose file"
rm "$L/loose/${victim_id:0:2}/${victim_id:2}"
before=$(store_sums "$L" loose packs)
casfs_mount "$L" "$mnt" || bail "mount of a store missing a loose object"
read_fails_eio "reading the file whose loose object is gone fails with EIO" "$mnt/$victim"
read_fails_eio "  ... and again (nothing cached a wrong answer)" "$mnt/$victim"
grep -v " \./$victim\$" "$L.sums" >"$WORK/l.want"
tree_sums "$mnt" "$victim" >"$WORK/l.now"
expect_same "every other file reads back" "$WORK/l.want" "$WORK/l.now"
check "new files can still be written" cp "$L.sums" "$mnt/new"
casfs_unmount "$L" "$mnt"
casfs_mount "$L" "$mnt" || bail "remount"
check "  ... and read back after a remount" cmp "$L.sums" "$mnt/new"
casfs_unmount "$L" "$mnt"
check_fails "casfs store verify reports the missing object" timeout 120 "$CASFS" store verify "$L"
finish
