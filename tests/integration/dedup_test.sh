#!/usr/bin/env bash
# Deduplication through a real casfs mount, measured with `casfs store status --json`
# while the store is unmounted:
#   - a second copy of a tree (/usr/include, or CASFS_TEST_TREE) grows the stored
#     bytes by under 1% of the tree's size;
#   - a 10 MiB file of random bytes, then a second file holding one byte and the same
#     10 MiB, adds at most 4 objects and under 1 MiB (content-defined chunking);
#   - a copy of a file inside the mount adds no object.
# Every copy is read back after a remount, so no saving comes from data that was lost.
#
#   bash dedup_test.sh /path/to/casfs        (ctest sets CASFS_IO=uring or sync)
#
# Every check prints "ok" or "FAIL"; the last line is "N passed, M failed".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools cp cmp openssl head

SRC=${CASFS_TEST_TREE:-/usr/include}
SRC=$(realpath "$SRC")
if [[ ! -d "$SRC" ]] || (($(find "$SRC" -maxdepth 2 -type f | head -n 100 | wc -l) < 100)); then
  echo "$LIB_NAME: $SRC is not a tree of files to copy (set CASFS_TEST_TREE)" >&2
  exit 2
fi

MiB=$((1 << 20))

# --- workloads: each takes the directory it works in ------------------------------

# copy_tree DIR NAME: cp -a of the source tree to DIR/NAME.
copy_tree() {
  check "cp -a of $SRC to $2" t cp -a "$SRC" "$1/$2"
}
# check_tree DIR NAME LABEL: DIR/NAME holds the source's bytes.
check_tree() {
  tree_sums "$1/$2" >"$WORK/$2.sums"
  expect_same "sha256 of every file of $2 equals the source's$3" "$WORK/src.sums" "$WORK/$2.sums"
}
# write_random DIR: r1 = the 10 MiB of random bytes.
write_random() {
  check "write r1: 10 MiB of random bytes" t cp "$WORK/random" "$1/r1"
}
# write_shifted DIR: r2 = one byte, then the same 10 MiB.
write_shifted() {
  check "write r2: one byte + the same 10 MiB" t cp "$WORK/shifted" "$1/r2"
}
copy_inside() {
  check "cp of r1 to r3 inside the mount" t cp "$1/r1" "$1/r3"
}
check_random_files() { # check_random_files DIR LABEL [r3]
  expect_same "r1 reads back as the 10 MiB$2" "$WORK/random" "$1/r1"
  expect_same "r2 reads back as one byte + the 10 MiB$2" "$WORK/shifted" "$1/r2"
  if [[ -n "${3:-}" ]]; then expect_same "r3 reads back as the 10 MiB$2" "$WORK/random" "$1/r3"; fi
}

# --- measurements ----------------------------------------------------------------
# measure STORE NAME: offline status into $WORK/NAME.json; sets objects_NAME, stored_NAME,
# raw_NAME.
measure() {
  local json=$WORK/$2.json objects stored raw
  store_status "$1" "$json" || bail "casfs store status --json ($2)"
  objects=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(int(s["objects"]["loose"]) + int(s["objects"]["packed"]), int(s["bytes"]["stored"]), int(s["bytes"]["raw"]))' "$json") ||
    bail "status --json has objects.loose, objects.packed, bytes.stored, bytes.raw ($(head -c 300 "$json"))"
  read -r objects stored raw <<<"$objects"
  printf -v "objects_$2" %s "$objects"
  printf -v "stored_$2" %s "$stored"
  printf -v "raw_$2" %s "$raw"
  echo "      $2: $objects objects, $raw bytes raw, $stored bytes stored, $(json_get "$json" packs) packs"
}

# --- main ------------------------------------------------------------------------
tree_sums "$SRC" >"$WORK/src.sums"
TREE_BYTES=$(tree_file_bytes "$SRC")
# The tree's distinct contents, file by file: what one copy must at least store.
DISTINCT_BYTES=$(cd "$SRC" && awk '!seen[$1]++ { print substr($0, 67) }' "$WORK/src.sums" |
  tr '\n' '\0' | xargs -0 -r stat -c %s -- | awk '{ sum += $1 } END { print sum + 0 }')
echo "source: $SRC, $TREE_BYTES bytes in files, $DISTINCT_BYTES of them distinct"
# Random bytes from a fixed key, so every run stores the same data.
head -c $((10 * MiB)) /dev/zero |
  openssl enc -aes-256-ctr -nosalt -K "$(printf '%064x' 20240601)" -iv "$(printf '%032x' 7)" >"$WORK/random" ||
  bail "openssl enc of 10 MiB"
expect_eq "the 10 MiB of random bytes are 10 MiB" $((10 * MiB)) "$(stat -c %s "$WORK/random")"
{ printf 'x' && cat "$WORK/random"; } >"$WORK/shifted"

S=$WORK/store
M=$WORK/mnt
casfs_mkfs "$S" || bail "casfs mkfs"
measure "$S" empty

section "a tree, then the same tree again"
casfs_mount "$S" "$M" || bail "mount"
copy_tree "$M" one
casfs_unmount "$S" "$M" || bail "unmount"
measure "$S" one
if ((raw_one * 2 >= DISTINCT_BYTES && stored_one > 0)); then
  pass "the first copy is stored: $raw_one bytes raw, $stored_one stored (distinct contents: $DISTINCT_BYTES)"
else
  fail "the first copy is stored" "bytes.raw $raw_one, bytes.stored $stored_one; want bytes.raw >= half of $DISTINCT_BYTES"
fi
casfs_mount "$S" "$M" || bail "mount"
copy_tree "$M" two
check_tree "$M" two ""
casfs_unmount "$S" "$M" || bail "unmount"
measure "$S" two
expect_lt "a second copy of the tree grows bytes.stored by under 1% of the tree's $TREE_BYTES bytes" \
  $((stored_two - stored_one)) $((TREE_BYTES / 100)) "objects $objects_one -> $objects_two"

section "10 MiB of random bytes, then one byte + the same 10 MiB"
casfs_mount "$S" "$M" || bail "mount"
write_random "$M"
casfs_unmount "$S" "$M" || bail "unmount"
measure "$S" random
expect_le "10 MiB of random bytes grow bytes.raw by at least 10 MiB - 64 KiB" \
  $((10 * MiB - (raw_random - raw_two))) $((64 << 10)) "bytes.raw $raw_two -> $raw_random"
casfs_mount "$S" "$M" || bail "mount"
write_shifted "$M"
casfs_unmount "$S" "$M" || bail "unmount"
measure "$S" shifted
expect_le "one byte + the same 10 MiB adds at most 4 objects" $((objects_shifted - objects_random)) 4
expect_lt "one byte + the same 10 MiB grows bytes.stored by under 1 MiB" $((stored_shifted - stored_random)) $MiB

section "a copy inside the mount"
casfs_mount "$S" "$M" || bail "mount"
check_random_files "$M" " (after remount)"
copy_inside "$M"
casfs_unmount "$S" "$M" || bail "unmount"
measure "$S" inside
expect_eq "a copy of r1 inside the mount adds no object" "$objects_shifted" "$objects_inside"

section "everything still reads back"
casfs_mount "$S" "$M" || bail "mount"
check_tree "$M" one " (at the end)"
check_tree "$M" two " (at the end)"
check_random_files "$M" " (at the end)" r3
casfs_unmount "$S" "$M" || bail "unmount"
finish
