#!/usr/bin/env bash
# --help and --version of casfs and casfsctl: every command and subcommand answers
# --help with its usage on stdout, nothing on stderr and exit 0; --version names the
# version; a bad -o loglevel= is refused before anything is mounted. Run by ctest once
# per io engine:
#
#   bash help_cli_test.sh /path/to/casfs
#
# casfsctl is taken from $CASFS_CTL, or next to casfs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'rm -rf "$work"' EXIT

casfsctl=${CASFS_CTL:-$(dirname "$casfs")/casfsctl}

# expect_help PROGRAM WORDS...: PROGRAM WORDS... --help prints usage on stdout only.
expect_help() {
  local program=$1 name
  shift
  name="$(basename "$program") $* --help"
  "$program" "$@" --help >"$out" 2>"$err"
  rc=$?
  if ((rc != 0)); then
    fail "$name" "want exit 0, got: $(show)"
  elif ! grep -qi '^usage:' "$out"; then
    fail "$name" "want a usage line on stdout, got: $(show)"
  elif [[ -s $err ]]; then
    fail "$name" "want nothing on stderr, got: $(show)"
  else
    pass "$name"
  fi
}

expect_help "$casfs"
for cmd in mkfs mount fsck store; do expect_help "$casfs" "$cmd"; done
for cmd in init add cat ls rm status pack gc repack verify rebuild-index; do
  expect_help "$casfs" store "$cmd"
done
if [[ -x $casfsctl ]]; then
  expect_help "$casfsctl"
  for cmd in status flush pack gc repack verify jobs; do expect_help "$casfsctl" "$cmd"; done
  "$casfsctl" --version >"$out" 2>"$err"
  rc=$?
  expect_rc 0 "casfsctl --version"
  expect_eq "casfsctl --version names the version" 1 "$(grep -cE '^casfsctl [0-9]+\.[0-9]+\.[0-9]+$' "$out")"
else
  fail "casfsctl next to casfs" "not an executable: $casfsctl"
fi

cas --version
expect_rc 0 "casfs --version"
expect_eq "casfs --version names the version" 1 "$(grep -cE '^casfs [0-9]+\.[0-9]+\.[0-9]+$' "$out")"

# Option values are checked before the mount is attempted.
mkdir -p "$work/mnt"
cas mkfs "$work/store"
cas mount "$work/store" "$work/mnt" -o loglevel=loud
expect_rc 1 "casfs mount -o loglevel=loud is refused"
expect_eq "naming the levels" 1 "$(grep -c 'expected error, warning, info or debug' "$err")"

finish
