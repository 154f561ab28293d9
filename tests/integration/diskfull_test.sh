#!/usr/bin/env bash
# A store on a small tmpfs filled up: writes fail with ENOSPC (at close or fsync,
# as the writeback cache reports them), nothing stored before is damaged, and once
# space is freed the filesystem takes writes again; all of it survives a remount.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools dd sha256sum

small=$WORK/small
mkdir -p "$small"
mount -t tmpfs -o size=96m casfs-test-tmpfs "$small" || { echo "$LIB_NAME: skipped: cannot mount a tmpfs"; exit 77; }
lib_extra_teardown() { if mountpoint -q "$small"; then umount -l "$small"; fi; }
store=$small/store mnt=$WORK/mnt
casfs_mkfs "$store" || bail "mkfs failed"
# Room to free later: a ballast file on the same tmpfs, outside the store.
head -c $((24 << 20)) /dev/zero >"$small/ballast"
casfs_mount "$store" "$mnt" -o logfile="$WORK/daemon.log" || bail "mount failed"

# Files written and fsync'd before the disk fills, with their checksums.
: >"$WORK/sums"
write_file() { # write_file NAME: 1 MiB of fresh random bytes, fsync'd; 0 on success
  head -c $((1 << 20)) /dev/urandom >"$WORK/chunk"
  dd if="$WORK/chunk" of="$mnt/$1" bs=1M conv=fsync status=none 2>"$WORK/dd.err" || return 1
  echo "$(sha256sum <"$WORK/chunk" | cut -d' ' -f1) $1" >>"$WORK/sums"
}
verify_sums() {
  local digest name bad=0
  while read -r digest name; do
    [[ "$(sha256sum <"$mnt/$name" 2>/dev/null | cut -d' ' -f1)" == "$digest" ]] || { echo "bad: $name"; bad=1; }
  done <"$WORK/sums"
  return $bad
}

n=0 full=0
for ((n = 1; n <= 200; n++)); do
  if ! write_file "f$n"; then
    full=1
    break
  fi
done
expect_eq "filling the store ends in a failed write" "1" "$full"
expect_eq "which says ENOSPC" "1" "$(grep -c 'No space left on device' "$WORK/dd.err")"
check "files written before the disk filled read back intact" verify_sums
check "creating a file on the full filesystem fails cleanly or succeeds" \
  bash -c "touch '$mnt/empty-when-full' 2>&1 | grep -q 'No space left' || test -e '$mnt/empty-when-full'"
check "the filesystem still lists and stats" ls -la "$mnt"

rm -f "$small/ballast"
check "after space is freed, a new file is written and fsync'd" write_file "after-free"
check "and everything reads back" verify_sums
casfs_unmount "$store" "$mnt"
casfs_mount "$store" "$mnt" -o logfile="$WORK/daemon.log" || bail "remount failed"
check "after a remount everything written and fsync'd reads back" verify_sums
casfs_unmount "$store" "$mnt"
umount "$small"
finish
