#!/usr/bin/env bash
# with_fuse_uring.sh TEST_SCRIPT ARGS...: runs an integration test with every mount
# serving FUSE over io_uring (casfs mount -o uring). The kernel offers that transport
# only while the fuse module's enable_uring parameter is on: it is turned on for the
# test and put back as it was afterwards. Exit 77 (skipped) where the kernel has no
# such parameter (before Linux 6.14, or without CONFIG_FUSE_IO_URING) or it cannot
# be changed (not root).
set -uo pipefail
param=/sys/module/fuse/parameters/enable_uring
if [[ ! -e $param ]]; then
  echo "skipped: $param does not exist (FUSE over io_uring needs Linux 6.14 or later)"
  exit 77
fi
before=$(cat "$param")
if ! echo Y >"$param" 2>/dev/null; then
  echo "skipped: cannot turn on $param (needs root)"
  exit 77
fi
trap 'echo "$before" >"$param"' EXIT
CASFS_MOUNT_OPTIONS=uring bash "$@"
