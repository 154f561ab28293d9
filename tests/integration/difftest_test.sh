#!/usr/bin/env bash
# The randomized differential tester (fs_difftest) against a real casfs mount:
# 100,000 random operations applied both to the mount and to a directory on the
# host filesystem, with every result compared, the trees compared in full now and
# then, and the filesystem unmounted and remounted at random points in between.
# The seed is printed; CASFS_TEST_SEED=N reruns a failure, CASFS_DIFFTEST_OPS=N
# changes the length.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

difftest=${CASFS_DIFFTEST:-$(dirname "$CASFS")/../tests/fs_difftest}
[[ -x "$difftest" ]] || bail "fs_difftest not found (set CASFS_DIFFTEST)"
seed=${CASFS_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
ops=${CASFS_DIFFTEST_OPS:-$(scaled 100000)}
echo "$LIB_NAME: seed=$seed ops=$ops (rerun with CASFS_TEST_SEED=$seed)"

store=$WORK/store mnt=$WORK/mnt ref=$WORK/ref
mkdir -p "$ref"
casfs_mkfs "$store" || bail "mkfs failed"
casfs_mount "$store" "$mnt" -o logfile="$WORK/daemon.log" || bail "mount failed"

# What the tester runs to remount: everything it holds on the mount is closed first.
remount="fusermount3 -u '$mnt' && timeout 60 flock '$store/run/lock' true && \
'$CASFS' mount '$store' '$mnt' -o logfile='$WORK/daemon.log'"
check "fs_difftest: $ops operations, seed $seed, remounts on the way" \
  t "$difftest" --test "$mnt" --ref "$ref" --seed "$seed" --ops "$ops" \
  --remount-every 10000 --remount-cmd "$remount"
tail -n 2 "$LIB_OUT"
casfs_unmount "$store" "$mnt"
if [[ -s "$WORK/daemon.log" ]]; then
  echo "daemon log:"
  tail -n 20 "$WORK/daemon.log"
fi
finish
