#!/usr/bin/env bash
# POSIX behaviour that needs more than one user, device numbers, very large
# directories or a daemon's life cycle: permissions under allow_other (enforced by
# the kernel from the modes casfs stores), sticky and set-group-ID directories,
# set-ID bits cleared on write, POSIX ACLs (enforced, kept in step with modes,
# inherited from default ACLs, the umask applied otherwise), mknod, trusted./security.
# xattrs, a directory of
# 100,000 entries listed while it changes, statfs, ro mounts, SIGTERM, and the
# mount refusals (a store already mounted, a missing mountpoint, not a store).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools setpriv setfattr getfattr setfacl getfacl mknod stat df fallocate

store=$WORK/store mnt=$WORK/mnt
casfs_mkfs "$store" || bail "mkfs failed"
casfs_mount "$store" "$mnt" -o allow_other,logfile="$WORK/daemon.log" || bail "mount failed"
chmod 0755 "$WORK" # other users must be able to reach the mount
as_user() { # as_user UID CMD...: CMD as that user, with no supplementary groups
  local uid=$1
  shift
  setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@"
}
nobody=65534 other=12345

# --- permissions, as another user ----------------------------------------------
echo secret >"$mnt/secret" && chmod 0600 "$mnt/secret"
echo public >"$mnt/public" && chmod 0644 "$mnt/public"
mkdir "$mnt/private" && echo x >"$mnt/private/f" && chmod 0700 "$mnt/private"
check_fails "another user cannot read a 0600 file" as_user $nobody cat "$mnt/secret"
check "another user reads a 0644 file" as_user $nobody cat "$mnt/public"
check_fails "another user cannot write a 0644 file" as_user $nobody sh -c "echo x >>'$mnt/public'"
check_fails "another user cannot list a 0700 directory" as_user $nobody ls "$mnt/private"
check_fails "another user cannot create in a 0755 root-owned directory" as_user $nobody touch "$mnt/mine"
check_fails "another user cannot chmod a file it does not own" as_user $nobody chmod 0777 "$mnt/public"
check_fails "another user cannot chown a file to itself" as_user $nobody chown $nobody "$mnt/public"
check_fails "another user cannot write a 0600 file" as_user $nobody sh -c "echo x >>'$mnt/secret'"
check_fails "another user cannot truncate a 0600 file" as_user $nobody truncate -s 0 "$mnt/secret"
check_fails "another user cannot remove a file from a 0700 directory" as_user $nobody rm -f "$mnt/private/f"
expect_eq "the 0600 file is unchanged" "secret" "$(cat "$mnt/secret")"

# Sticky directory: anyone creates, only the owner removes.
mkdir "$mnt/tmp" && chmod 1777 "$mnt/tmp"
check "a user creates a file in a sticky directory" as_user $nobody sh -c "echo n >'$mnt/tmp/by-nobody'"
expect_eq "the new file belongs to its creator" "$nobody:$nobody" "$(stat -c %u:%g "$mnt/tmp/by-nobody")"
check_fails "another user cannot remove it from the sticky directory" as_user $other rm -f "$mnt/tmp/by-nobody"
check "its owner can" as_user $nobody rm "$mnt/tmp/by-nobody"

# Set-group-ID directory: the group and (for directories) the bit are inherited.
mkdir "$mnt/sg" && chgrp 4242 "$mnt/sg" && chmod 2777 "$mnt/sg"
as_user $nobody sh -c "touch '$mnt/sg/f' && mkdir '$mnt/sg/d'"
expect_eq "a file in a set-group-ID directory gets its group" "4242" "$(stat -c %g "$mnt/sg/f")"
expect_eq "a subdirectory inherits group and set-group-ID bit" "4242 2" \
  "$(stat -c '%g %a' "$mnt/sg/d" | awk '{print $1, substr($2, 1, 1)}')"

# Set-user-ID cleared when another user writes, as ext4 does.
printf 'prog' >"$mnt/suid" && chmod 4777 "$mnt/suid"
check "another user writes a world-writable set-user-ID file" as_user $nobody sh -c "echo more >>'$mnt/suid'"
expect_eq "the write cleared set-user-ID" "777" "$(stat -c %a "$mnt/suid")"
# Set-group-ID with group execute (a set-group-ID program) too; and a write by the
# owner keeps both bits.
printf 'prog' >"$mnt/sgid" && chmod 2777 "$mnt/sgid"
check "another user writes a world-writable set-group-ID file" as_user $nobody sh -c "echo more >>'$mnt/sgid'"
expect_eq "the write cleared set-group-ID" "777" "$(stat -c %a "$mnt/sgid")"
printf 'prog' >"$mnt/own-suid" && chmod 6755 "$mnt/own-suid"
echo more >>"$mnt/own-suid"
expect_eq "the owner (root) writing its own set-ID file keeps the bits" "6755" "$(stat -c %a "$mnt/own-suid")"
# The kernel leaves these to casfs (FUSE_HANDLE_KILLPRIV_V2), and stat must show the
# new mode at once. Truncating, opening with O_TRUNC and writing with O_DIRECT clear
# the bits as a buffered write does.
printf 'prog' >"$mnt/trunc-sid" && chmod 6777 "$mnt/trunc-sid"
check "another user truncates a world-writable set-ID file" as_user $nobody truncate -s 2 "$mnt/trunc-sid"
expect_eq "the truncate cleared both bits" "777 2" "$(stat -c '%a %s' "$mnt/trunc-sid")"
printf 'prog' >"$mnt/otrunc-suid" && chmod 4777 "$mnt/otrunc-suid"
check "another user opens a set-user-ID file with O_TRUNC" as_user $nobody sh -c ": >'$mnt/otrunc-suid'"
expect_eq "the O_TRUNC open cleared set-user-ID" "777 0" "$(stat -c '%a %s' "$mnt/otrunc-suid")"
printf 'prog' >"$mnt/direct-suid" && chmod 4777 "$mnt/direct-suid"
check "another user writes a set-user-ID file with O_DIRECT" as_user $nobody \
  dd if=/dev/zero of="$mnt/direct-suid" bs=4096 count=1 oflag=direct conv=notrunc status=none
expect_eq "the O_DIRECT write cleared set-user-ID" "777" "$(stat -c %a "$mnt/direct-suid")"
# Set-group-ID without group execute: cleared by a writer outside the file's group
# only (as on ext4 since Linux 6.2).
printf 'prog' >"$mnt/sgid-outside" && chmod 2766 "$mnt/sgid-outside"
printf 'prog' >"$mnt/sgid-inside" && chgrp $nobody "$mnt/sgid-inside" && chmod 2766 "$mnt/sgid-inside"
check "another user writes two set-group-ID files without group execute" \
  as_user $nobody sh -c "echo more >>'$mnt/sgid-outside' && echo more >>'$mnt/sgid-inside'"
expect_eq "set-group-ID without group execute: outside the group cleared, inside kept" "766 2766" \
  "$(stat -c %a "$mnt/sgid-outside" "$mnt/sgid-inside" | paste -sd' ')"
# The same through a supplementary group, by a truncate: that one reaches casfs
# marked as clearing, and casfs asks the kernel for the caller's groups.
printf 'prog' >"$mnt/sgid-member" && chgrp 4243 "$mnt/sgid-member" && chmod 2766 "$mnt/sgid-member"
check "a member of the file's group (a supplementary one) truncates it" \
  setpriv --reuid=$nobody --regid=$nobody --groups=4243 truncate -s 2 "$mnt/sgid-member"
expect_eq "the member's truncate kept set-group-ID without group execute" "2766 2" \
  "$(stat -c '%a %s' "$mnt/sgid-member")"
printf 'prog' >"$mnt/root-trunc" && chmod 6777 "$mnt/root-trunc" && truncate -s 2 "$mnt/root-trunc"
expect_eq "root's truncate keeps both bits" "6777" "$(stat -c %a "$mnt/root-trunc")"
# fallocate and copy_file_range change bytes too, and arrive unmarked.
printf 'prog' >"$mnt/falloc-suid" && chmod 4777 "$mnt/falloc-suid"
printf 'prog' >"$mnt/falloc-root" && chmod 4755 "$mnt/falloc-root"
check "another user fallocates a set-user-ID file" as_user $nobody fallocate -l 8192 "$mnt/falloc-suid"
check "root fallocates its own" fallocate -l 8192 "$mnt/falloc-root"
expect_eq "fallocate: another user's cleared set-user-ID, root's kept it" "777 4755" \
  "$(stat -c %a "$mnt/falloc-suid" "$mnt/falloc-root" | paste -sd' ')"
printf 'data' >"$mnt/copy-src" && printf 'prog' >"$mnt/copy-suid" && chmod 4777 "$mnt/copy-suid"
check "another user copy_file_range()s into a set-user-ID file" as_user $nobody /usr/bin/python3 -c "
import os
src, dst = os.open('$mnt/copy-src', os.O_RDONLY), os.open('$mnt/copy-suid', os.O_WRONLY)
assert os.copy_file_range(src, dst, 4, 0, 0) == 4"
expect_eq "copy_file_range cleared set-user-ID" "777" "$(stat -c %a "$mnt/copy-suid")"
# chown clears set-user-ID and a program's set-group-ID even when root does it.
printf 'prog' >"$mnt/chown-sid" && chmod 6755 "$mnt/chown-sid"
printf 'prog' >"$mnt/chown-sgid-noexec" && chmod 2745 "$mnt/chown-sgid-noexec"
mkdir "$mnt/chown-sgid-dir" && chmod 2775 "$mnt/chown-sgid-dir"
chown $other "$mnt/chown-sid" "$mnt/chown-sgid-noexec" "$mnt/chown-sgid-dir"
expect_eq "chown by root cleared set-user-ID and set-group-ID, kept it without group execute" \
  "755 2745" "$(stat -c %a "$mnt/chown-sid" "$mnt/chown-sgid-noexec" | paste -sd' ')"
expect_eq "a directory keeps set-group-ID through chown" "2775" "$(stat -c %a "$mnt/chown-sgid-dir")"
# chown(f, -1, -1) changes no owner and still clears them, as on ext4.
printf 'prog' >"$mnt/chown-none" && chmod 6755 "$mnt/chown-none"
printf 'prog' >"$mnt/chown-none-noexec" && chmod 2745 "$mnt/chown-none-noexec"
check "root chowns to -1, -1" /usr/bin/python3 -c "
import os
for f in ('$mnt/chown-none', '$mnt/chown-none-noexec'):
    os.chown(f, -1, -1)"
expect_eq "chown(-1, -1) cleared set-user-ID and set-group-ID, kept it without group execute" \
  "755 2745" "$(stat -c %a "$mnt/chown-none" "$mnt/chown-none-noexec" | paste -sd' ')"
check "utimensat: times set, then both omitted" /usr/bin/python3 -c "
import ctypes, os
os.chmod('$mnt/chown-none', 0o4755)
os.utime('$mnt/chown-none', ns=(0, 0))
UTIME_OMIT = (1 << 30) - 2
omit = (ctypes.c_long * 4)(0, UTIME_OMIT, 0, UTIME_OMIT)
libc = ctypes.CDLL(None, use_errno=True)
assert libc.utimensat(-100, b'$mnt/chown-none', omit, 0) == 0, os.strerror(ctypes.get_errno())"
expect_eq "setting times keeps set-user-ID" "4755" "$(stat -c %a "$mnt/chown-none")"
# A file capability goes too (the kernel asks for it, then removes it).
caps=0x0000000200040000000000000000000000000000 # cap_net_bind_service, permitted
printf 'prog' >"$mnt/capable" && chmod 0777 "$mnt/capable"
check "root sets a file capability" setfattr -n security.capability -v $caps "$mnt/capable"
check "another user writes the file" as_user $nobody sh -c "echo more >>'$mnt/capable'"
check_fails "the write removed the capability" getfattr -n security.capability "$mnt/capable"
check "root sets it again" setfattr -n security.capability -v $caps "$mnt/capable"
chown $other "$mnt/capable"
check_fails "chown removed it" getfattr -n security.capability "$mnt/capable"

# --- POSIX ACLs and the umask ----------------------------------------------------
(umask 027 && touch "$mnt/masked" && mkdir "$mnt/masked-dir")
expect_eq "the umask applies to new files and directories" "640 750" \
  "$(stat -c %a "$mnt/masked" "$mnt/masked-dir" | paste -sd' ')"
echo acl >"$mnt/acl-file" && chmod 0600 "$mnt/acl-file"
check_fails "before setfacl another user cannot read a 0600 file" as_user $nobody cat "$mnt/acl-file"
check "setfacl grants one user read access" setfacl -m u:$nobody:r "$mnt/acl-file"
check "that user now reads it" as_user $nobody cat "$mnt/acl-file"
check_fails "another user still cannot" as_user $other cat "$mnt/acl-file"
expect_eq "the mode's group bits show the ACL mask" "640" "$(stat -c %a "$mnt/acl-file")"
chmod 0600 "$mnt/acl-file"
expect_eq "chmod moves the mask" "mask::---" "$(getfacl -c "$mnt/acl-file" 2>/dev/null | grep '^mask')"
check_fails "and with it the granted access" as_user $nobody cat "$mnt/acl-file"
mkdir "$mnt/inherit" && setfacl -d -m u:$nobody:rwx "$mnt/inherit"
(umask 077 && echo x >"$mnt/inherit/f" && mkdir "$mnt/inherit/sub")
expect_eq "a default ACL replaces the umask for new files" "664" "$(stat -c %a "$mnt/inherit/f")"
expect_eq "and is inherited as their access ACL" "user:nobody:rwx	#effective:rw-" \
  "$(getfacl -c "$mnt/inherit/f" 2>/dev/null | grep '^user:nobody')"
expect_eq "subdirectories inherit the default ACL itself" "default:user:nobody:rwx" \
  "$(getfacl -c "$mnt/inherit/sub" 2>/dev/null | grep '^default:user:nobody')"
getfacl -cR "$mnt/acl-file" "$mnt/inherit" >"$WORK/acls.before" 2>/dev/null

# --- special files and xattrs ----------------------------------------------------
check "mknod of a character device" mknod "$mnt/null-like" c 1 3
expect_eq "the device node keeps its type and numbers" "character special file 1 3" \
  "$(stat -c '%F %t %T' "$mnt/null-like")"
check "mknod of a fifo" mknod "$mnt/fifo" p
check "a trusted. xattr" setfattr -n trusted.casfs -v hello "$mnt/public"
check "a security. xattr" setfattr -n security.casfs -v 0x00ff00 "$mnt/public"
expect_eq "trusted. reads back" '"hello"' "$(getfattr --absolute-names --only-values -n trusted.casfs "$mnt/public" | sed 's/.*/"&"/')"
expect_eq "security. reads back" "0x00ff00" "$(getfattr --absolute-names -e hex -n security.casfs "$mnt/public" | sed -n 's/^security.casfs=//p')"
check_fails "an xattr over 64 KiB is refused" setfattr -n user.big -v "0x$(head -c 70000 /dev/zero | od -An -tx1 -v | tr -d ' \n')" "$mnt/public"

# --- a directory of 100,000 entries ------------------------------------------------
# 20,000 at least (CASFS_TEST_SCALE): the listing below changes the first 10,000.
big=$(scaled 100000) && ((big < 20000)) && big=20000
check "$big files in one directory, listed while it changes" t python3 - "$mnt/big" "$big" <<'PY'
import os, sys
d = sys.argv[1]
os.mkdir(d)
n = int(sys.argv[2])
for i in range(n):
    os.close(os.open(f"{d}/f{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
names = os.listdir(d)
assert len(names) == n, f"listdir found {len(names)} of {n}"
assert os.stat(f"{d}/f{n - 1:06d}").st_size == 0
# Start a listing, change the directory under it, finish it: every entry that
# existed throughout must appear exactly once, and nothing twice.
seen = []
with os.scandir(d) as it:
    for k, entry in enumerate(it):
        seen.append(entry.name)
        if k == 1000:
            for i in range(0, 10_000, 2):
                os.unlink(f"{d}/f{i:06d}")
            for i in range(5000):
                os.close(os.open(f"{d}/g{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
assert len(seen) == len(set(seen)), "a listing repeated entries"
stable = {f"f{i:06d}" for i in range(10_000, n)}
missing = stable - set(seen)
assert not missing, f"{len(missing)} entries that never changed were skipped"
assert len(os.listdir(d)) == n, "the directory has the wrong size after the changes"
print("ok")
PY

# --- statfs ----------------------------------------------------------------------
read -r blocks avail files < <(stat -f -c '%b %a %c' "$mnt")
check "statfs reports blocks, free blocks and inodes" test "$blocks" -gt 0 -a "$avail" -gt 0 -a "$files" -gt 100000

# --- readahead -------------------------------------------------------------------
# The daemon (root here) widens the kernel's 128 KiB readahead once INIT is answered.
readahead_kb() { cat "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb"; }
wait_readahead() { # wait_readahead MNT KIB: up to 5 s for the window to become KIB
  for _ in $(seq 50); do [[ $(readahead_kb "$1") == "$2" ]] && break; sleep 0.1; done
  readahead_kb "$1"
}
expect_eq "the mount's readahead window is 4 MiB by default" "4096" "$(wait_readahead "$mnt" 4096)"

# --- persistence of all that, and the life cycle --------------------------------
casfs_unmount "$store" "$mnt"
casfs_mount "$store" "$mnt" -o allow_other,logfile="$WORK/daemon.log" || bail "remount failed"
expect_eq "after a remount: the device node" "character special file 1 3" "$(stat -c '%F %t %T' "$mnt/null-like")"
expect_eq "after a remount: modes, owners, groups" "600 0:0|2777 0:4242|777 0:0" \
  "$(stat -c '%a %u:%g' "$mnt/secret" "$mnt/sg" "$mnt/suid" | paste -sd'|')"
expect_eq "after a remount: the big directory" "$big" "$(ls -f "$mnt/big" | grep -c '^[fg]')"
check_fails "another user still cannot read the 0600 file" as_user $nobody cat "$mnt/secret"
getfacl -cR "$mnt/acl-file" "$mnt/inherit" >"$WORK/acls.after" 2>/dev/null
expect_same "after a remount: POSIX ACLs" "$WORK/acls.before" "$WORK/acls.after"

# Output to a file, not $(...): a daemon that did start would hold the pipe open.
check_fails "a mountpoint that does not exist is refused" \
  timeout 60 "$CASFS" mount "$store" "$WORK/elsewhere"
expect_eq "with a message naming it" "1" "$(grep -c 'does not exist' "$LIB_OUT")"
mkdir -p "$WORK/second"
check_fails "a store that is mounted is refused" timeout 60 "$CASFS" mount "$store" "$WORK/second"
expect_eq "with a message saying so" "1" "$(grep -c 'already mounted' "$LIB_OUT")"
check_fails "and nothing is mounted there" mountpoint -q "$WORK/second"
mkdir -p "$WORK/not-a-store"
check_fails "a directory that is not a store is refused" "$CASFS" mount "$WORK/not-a-store" "$WORK/second"
check_fails "a readahead that is not whole KiB is refused" \
  timeout 60 "$CASFS" mount "$store" "$WORK/second" -o readahead=1000
expect_eq "with a message saying what it expects" "1" "$(grep -c 'whole number of KiB' "$LIB_OUT")"
check_fails "a cache size that is not a size is refused" \
  timeout 60 "$CASFS" mount "$store" "$WORK/second" -o cache=lots
expect_eq "with a message saying what it expects" "1" "$(grep -c '^casfs: -o cache=lots: expected a positive number of bytes' "$LIB_OUT")"
casfs_unmount "$store" "$mnt"

# Mounted by a relative path, as a user types it: the daemon moves to /, so statfs
# (df) and the free-space check must hold the store by its absolute path.
lib_register "$store" "$mnt" ""
(cd "$(dirname "$store")" && timeout -k 5 60 "$CASFS" mount "$(basename "$store")" "$mnt" -o ro,readahead=8M) \
  >"$WORK/relative.log" 2>&1 || bail "ro mount by a relative path failed: $(cat "$WORK/relative.log")"
check "statfs works on a store mounted by a relative path" stat -f "$mnt"
expect_eq "-o readahead=8M sets an 8 MiB window" "8192" "$(wait_readahead "$mnt" 8192)"
out=$(touch "$mnt/new" 2>&1)
expect_eq "a read-only mount refuses writes" "1" "$(grep -c 'Read-only file system' <<<"$out")"
expect_eq "and reads" "public" "$(cat "$mnt/public")"
casfs_unmount "$store" "$mnt"

# SIGTERM to a foreground daemon: it writes everything out, unmounts and exits 0.
mkdir -p "$mnt"
"$CASFS" mount "$store" "$mnt" -f >"$WORK/fg.log" 2>&1 &
pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
head -c 3000000 /dev/urandom >"$WORK/blob"
cp "$WORK/blob" "$mnt/blob"
kill -TERM "$pid"
timeout 60 tail --pid="$pid" -f /dev/null
wait "$pid"
expect_eq "SIGTERM: the daemon exits 0" "0" "$?"
check_fails "SIGTERM: the mount is gone" mountpoint -q "$mnt"
casfs_mount "$store" "$mnt" || bail "mount after SIGTERM failed"
check "SIGTERM: what was written before it is there" cmp "$WORK/blob" "$mnt/blob"
casfs_unmount "$store" "$mnt"
finish
