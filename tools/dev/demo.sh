#!/usr/bin/env bash
# Builds casfs, makes a store in a temporary directory and mounts it, then uses it
# as a filesystem: copy the project's sources in twice (the second copy stores
# nothing new), unmount, show what the store holds, remount and read it back.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD

echo "building (tools/dev/build.sh; installs missing packages first)…"
tools/dev/build.sh >/dev/null
casfs=$root/build/tools/casfs

work=$(mktemp -d /var/tmp/casfs-demo.XXXXXX)
store=$work/store
mnt=$work/mnt
mkdir "$mnt"
cleanup() {
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" || fusermount3 -uz "$mnt"; fi
  # The daemon holds the store's lock until it has written everything out.
  timeout 60 flock "$store/run/lock" true 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bold='' plain=''
if [[ -t 1 ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
run() {
  step "$*"
  "$@"
}
unmount() {
  step "fusermount3 -u $mnt"
  fusermount3 -u "$mnt"
  timeout 60 flock "$store/run/lock" true
}

run "$casfs" --version
run "$casfs" mkfs "$store"
run "$casfs" mount "$store" "$mnt"
run cp -a store fs tools "$mnt/"
step "mkdir $mnt/copy2 && cp -a store fs tools $mnt/copy2/   # a second copy: nothing new is stored"
mkdir "$mnt/copy2" && cp -a store fs tools "$mnt/copy2/"
run du -sh --apparent-size "$mnt"
run df -h "$mnt"
unmount
run "$casfs" store status "$store"
run "$casfs" mount "$store" "$mnt"
step "diff -r store $mnt/copy2/store && diff -r fs $mnt/fs"
diff -r store "$mnt/copy2/store" && diff -r fs "$mnt/fs"
echo "identical: the sources came back byte for byte after a remount"
unmount

echo
echo "demo done (the store in $work is removed on exit)"
