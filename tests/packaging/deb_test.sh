#!/usr/bin/env bash
# The Debian package as an admin uses it: built with cpack from a build tree,
# installed with dpkg -i, then a store mounted with `mount -t fuse.casfs` and through
# an /etc/fstab line and `mount MNT`, written, read back after a remount, unmounted
# with umount(8) and checked with fsck; finally dpkg -r, after which none of the
# package's files may be left and /etc/fstab must be as it was.
#
#   bash deb_test.sh /path/to/casfs BUILD_DIR [CPACK]
#
# Needs root and /dev/fuse (exit 77 otherwise). It changes the machine: it installs
# and removes the casfs package and edits /etc/fstab, so it takes a lock that every
# copy of it (from any build tree) shares, and on any exit it unmounts, restores
# /etc/fstab byte for byte and removes the package if it installed it.
if ((EUID != 0)); then
  echo "deb_test: skipped: installing a package and editing /etc/fstab needs root"
  exit 77
fi
if ! command -v dpkg >/dev/null 2>&1; then
  echo "deb_test: skipped: not a Debian system (no dpkg)"
  exit 77
fi
BUILD_DIR=${2:-}
CPACK=${3:-cpack}
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
require_tools dpkg dpkg-deb dpkg-query mount umount "$CPACK" cmp
if [[ -z "$BUILD_DIR" || ! -f "$BUILD_DIR/CPackConfig.cmake" ]]; then
  echo "deb_test: BUILD_DIR (argument 2) must be a configured build tree: ${BUILD_DIR:-missing}" >&2
  exit 2
fi

# One run at a time on this machine, whichever build tree it comes from.
exec 9>/var/lock/casfs-deb-test.lock
if ! timeout 600 flock 9; then
  bail "another deb_test still holds /var/lock/casfs-deb-test.lock after 600 s"
fi

FSTAB_BACKUP=$WORK/fstab.orig
INSTALLED=0
cp -p /etc/fstab "$FSTAB_BACKUP" || bail "cannot back up /etc/fstab"

# Run by lib.sh's EXIT trap once everything mounted is unmounted.
lib_extra_teardown() {
  if ! cmp -s "$FSTAB_BACKUP" /etc/fstab; then
    echo "teardown: restoring /etc/fstab" >&2
    cp -p "$FSTAB_BACKUP" /etc/fstab
  fi
  if ((INSTALLED)) && dpkg_installed; then
    echo "teardown: removing the casfs package" >&2
    with_dpkg dpkg -r casfs >&2
  fi
}

dpkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' casfs 2>/dev/null) == "install ok installed" ]]
}
# with_dpkg CMD...: CMD, retried for a minute while apt or dpkg elsewhere holds the lock.
with_dpkg() {
  local deadline=$((SECONDS + 60)) rc
  while :; do
    "$@" >"$WORK/dpkg.out" 2>&1
    rc=$?
    if ((rc != 0)) && grep -q 'lock' "$WORK/dpkg.out" && ((SECONDS < deadline)); then
      sleep 2
      continue
    fi
    cat "$WORK/dpkg.out"
    return $rc
  done
}

if dpkg_installed; then
  bail "the casfs package is installed already; this test installs and removes it (dpkg -r casfs first)"
fi

# --- the package -----------------------------------------------------------------
section "cpack"
check "cpack -G DEB builds the package" t "$CPACK" -G DEB --config "$BUILD_DIR/CPackConfig.cmake" -B "$WORK/deb" ||
  bail "no package"
deb=$(find "$WORK/deb" -maxdepth 1 -name 'casfs_*.deb' | head -n 1)
[[ -n "$deb" ]] || bail "cpack made no casfs_*.deb in $WORK/deb"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
expect_eq "Depends names fuse3" 1 "$(tr ',' '\n' <<<"$depends" | grep -c '^ *fuse3\b')"
expect_eq "Depends has the runtime libraries from dpkg-shlibdeps" 1 \
  "$(grep -c 'libc6.*liblmdb0\|liblmdb0.*libc6' <<<"$depends")"

# --- install ---------------------------------------------------------------------
section "dpkg -i"
INSTALLED=1
check "dpkg -i installs the package" with_dpkg dpkg -i "$deb" || bail "dpkg -i failed"
dpkg -L casfs | sort >"$WORK/files"
expected=(
  /usr/bin/casfs /usr/bin/casfsctl /sbin/mount.fuse.casfs /lib/systemd/system/casfs@.service
  /usr/share/man/man8/casfs.8.gz /usr/share/man/man8/casfsctl.8.gz
  /usr/share/man/man8/mount.fuse.casfs.8.gz /usr/share/doc/casfs/README.md
  /usr/share/bash-completion/completions/casfs /usr/share/bash-completion/completions/casfsctl
)
for f in "${expected[@]}"; do
  if grep -qxF "$f" "$WORK/files" && [[ -e $f ]]; then pass "installed: $f"; else fail "installed: $f"; fi
done
expect_eq "casfs --version names the built version" "$("$CASFS" --version)" "$(/usr/bin/casfs --version)"
expect_eq "casfsctl --version too" "$("$CASFS" --version | sed 's/^casfs/casfsctl/')" \
  "$(/usr/bin/casfsctl --version)"
if command -v man >/dev/null 2>&1; then
  for page in casfs casfsctl mount.fuse.casfs; do
    expect_eq "man -w $page finds the installed page" 1 \
      "$(man -w "$page" 2>/dev/null | grep -c '^/usr/share/man/man8/')"
  done
  expect_eq "man casfs renders its EXIT STATUS" 1 \
    "$(MANWIDTH=80 man casfs 2>/dev/null | grep -c '^EXIT STATUS')"
fi
if [[ -f /usr/share/bash-completion/bash_completion ]]; then
  # complete WORDS...: what bash completes for the last word (possibly empty).
  complete_words() {
    bash -c '
      source /usr/share/bash-completion/bash_completion
      source "/usr/share/bash-completion/completions/$1"
      COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
      "_${1}" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
      printf "%s\n" "${COMPREPLY[@]}"' _ "$@" 2>/dev/null | sort | paste -sd' '
  }
  expect_eq "bash completes casfs subcommands" "mkfs mount" "$(complete_words casfs m)"
  expect_eq "bash completes casfs store subcommands" "rebuild-index repack rm" \
    "$(complete_words casfs store r)"
  expect_eq "bash completes casfs mount -o options" "logfile= loglevel=debug loglevel=error loglevel=info loglevel=warning" \
    "$(complete_words casfs mount s m -o lo)"
  expect_eq "bash completes casfsctl subcommands" "pack" "$(complete_words casfsctl pa)"
  expect_eq "bash completes casfsctl flags" "--help --threshold --wait" "$(complete_words casfsctl repack --)"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # The instance's EnvironmentFile does not exist here; verify checks the rest.
  systemd-analyze verify /lib/systemd/system/casfs@test.service >"$WORK/verify.out" 2>&1
  expect_eq "systemd-analyze verify finds nothing wrong with casfs@.service" "" \
    "$(grep -i 'casfs@' "$WORK/verify.out")"
fi

# --- mount -t fuse.casfs ---------------------------------------------------------
section "mount -t fuse.casfs"
# run_mount ARGS...: mount(8), bounded, without the lock's descriptor, which the daemon
# would otherwise keep open for as long as it runs.
run_mount() { t mount "$@" 9>&-; }
store=$WORK/store mnt=$WORK/mnt log=$WORK/daemon.log
mkdir -p "$mnt"
check "casfs mkfs (installed)" /usr/bin/casfs mkfs "$store" || bail "mkfs failed"
# mount(8)'s and systemd's own options must not reach FUSE, which would refuse them.
lib_register "$store" "$mnt" ""
check "mount -t fuse.casfs STORE MNT -o ..." run_mount -t fuse.casfs "$store" "$mnt" \
  -o "defaults,rw,noatime,nofail,_netdev,x-systemd.automount,comment=casfs,logfile=$log,loglevel=debug" ||
  bail "mount -t fuse.casfs failed"
check "the mount is live" mountpoint -q "$mnt"
expect_eq "it is of type fuse.casfs, with the store as its source" "fuse.casfs $store" \
  "$(awk -v m="$mnt" '$5 == m { for (i = 7; $i != "-"; i++); print $(i + 1), $(i + 2) }' /proc/self/mountinfo)"
expect_eq "noatime reached the kernel" 1 \
  "$(awk -v m="$mnt" '$5 == m' /proc/self/mountinfo | grep -c noatime)"
head -c 1000000 /dev/urandom >"$WORK/blob"
check "write a file" cp "$WORK/blob" "$mnt/blob"
check "read it back" cmp "$WORK/blob" "$mnt/blob"
# unmount_and_wait MNT: umount(8), then the daemon writes out and lets go of the store.
unmount_and_wait() {
  local mnt=$1 store=$2 deadline
  check "umount $mnt" t umount "$mnt" || return 1
  lib_unregister "$mnt"
  deadline=$((SECONDS + 60))
  until lib_lock_free "$store" && [[ -z $(lib_daemon_pids "$store") ]]; do
    if ((SECONDS >= deadline)); then
      fail "the daemon exits within 60 s of umount" "$(lib_daemon_list "$store")"
      return 1
    fi
    sleep 0.1
  done
  pass "the daemon exited after umount"
}
unmount_and_wait "$mnt" "$store"
check_fails "the mount is gone" mountpoint -q "$mnt"
check "fsck finds the store clean after umount" /usr/bin/casfs fsck "$store"
check "the daemon logged to the logfile, timestamped" \
  grep -q "^[0-9-]* [0-9:.]* casfs\[[0-9]*\]: serving $store on $mnt\$" "$log"
check "and that it wrote everything out at unmount" grep -q 'unmounted; writing out' "$log"
expect_eq "nothing else in the log" "" "$(grep -v -e ': debug: ' -e 'serving ' -e 'unmounted; ' "$log" | head -n 5)"

lib_register "$store" "$mnt" ""
check "mount -t fuse.casfs again, read-only, logging errors only" \
  run_mount -t fuse.casfs -o "ro,logfile=$log.2,loglevel=error" "$store" "$mnt" ||
  bail "remount failed"
check "the file is there after the remount" cmp "$WORK/blob" "$mnt/blob"
check_fails "the ro option reached the kernel" touch "$mnt/new"
unmount_and_wait "$mnt" "$store"
expect_eq "loglevel=error kept the notices out of the log" "" "$(cat "$log.2" 2>/dev/null)"

# --- /etc/fstab and mount MNT ----------------------------------------------------
section "/etc/fstab"
store2=$WORK/fstab-store mnt2=$WORK/fstab-mnt
mkdir -p "$mnt2"
check "casfs mkfs (for fstab)" /usr/bin/casfs mkfs "$store2" || bail "mkfs failed"
printf '%s %s fuse.casfs defaults 0 0\n' "$store2" "$mnt2" >>/etc/fstab
lib_register "$store2" "$mnt2" ""
check "mount MNT (from fstab)" run_mount "$mnt2" || bail "mount from fstab failed"
check "the fstab mount is live" mountpoint -q "$mnt2"
echo "written through fstab" >"$mnt2/note"
check "write and read through the fstab mount" grep -qx "written through fstab" "$mnt2/note"
unmount_and_wait "$mnt2" "$store2"
lib_register "$store2" "$mnt2" ""
check "mount MNT again" run_mount "$mnt2" || bail "second mount from fstab failed"
expect_eq "the file is there after the remount" "written through fstab" "$(cat "$mnt2/note")"
unmount_and_wait "$mnt2" "$store2"
check "fsck finds the fstab store clean" /usr/bin/casfs fsck "$store2"
# The options systemd's fstab generator reads, and noauto, are for mount(8) only.
cp -p "$FSTAB_BACKUP" /etc/fstab
printf '%s %s fuse.casfs noauto,nofail,x-systemd.requires-mounts-for=%s,user 0 0\n' \
  "$store2" "$mnt2" "$WORK" >>/etc/fstab
lib_register "$store2" "$mnt2" ""
check "mount MNT with systemd and mount(8) options in fstab" run_mount "$mnt2" ||
  bail "mount with fstab-only options failed"
expect_eq "it reads the same file" "written through fstab" "$(cat "$mnt2/note")"
unmount_and_wait "$mnt2" "$store2"
cp -p "$FSTAB_BACKUP" /etc/fstab
check "/etc/fstab is restored byte for byte" cmp "$FSTAB_BACKUP" /etc/fstab

# --- remove ----------------------------------------------------------------------
section "dpkg -r"
check "dpkg -r casfs" with_dpkg dpkg -r casfs
INSTALLED=0
check_fails "the package is gone" dpkg_installed
left=()
while read -r f; do
  # Directories such as /usr/bin belong to other packages too.
  [[ -e $f && ! -d $f ]] && left+=("$f")
done <"$WORK/files"
expect_eq "none of the package's files is left" "" "${left[*]}"
check_fails "no casfs on PATH from the package" test -e /usr/bin/casfs
finish
