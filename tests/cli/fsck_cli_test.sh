#!/usr/bin/env bash
# End-to-end test of `casfs fsck`: fsck(8)'s exit codes (0 clean, 1 corrected, 4 left
# uncorrected, 8 operational error, 16 usage error), its messages, --json, and
# --repair on stores damaged with casfs's own commands. Files are made through a real
# mount when this machine can mount FUSE filesystems; otherwise those checks are
# skipped. Run by ctest once per io engine:
#
#   bash fsck_cli_test.sh /path/to/casfs
#
# Every check prints "ok" or "FAIL" with what was expected; the last line is
# "N passed, M failed" and the exit status is non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mnt=$work/mnt
cleanup() {
  mountpoint -q "$mnt" 2>/dev/null && fusermount3 -uz "$mnt" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# An error is one line on stderr that starts with "casfs: ", and the given exit code.
expect_error() { # expect_error WANT_RC DESCRIPTION [PATTERN]
  local lines
  lines=$(wc -l <"$err")
  if [[ $rc -ne $1 ]]; then
    fail "$2" "want exit $1, got: $(show)"
  elif [[ $lines -ne 1 ]] || ! grep -q '^casfs: ' "$err"; then
    fail "$2" "want one line 'casfs: …' on stderr, got $lines lines: $(show)"
  elif [[ -n "${3:-}" ]] && ! grep -q -- "$3" "$err"; then
    fail "$2" "want stderr to match '$3', got: $(show)"
  else
    pass "$2 ($(cat "$err"))"
  fi
}
expect_out() { # expect_out DESCRIPTION PATTERN: a line of stdout matches
  if grep -q -- "$2" "$out"; then pass "$1"; else fail "$1" "want stdout to match '$2', got: $(show)"; fi
}
expect_no_out() { # expect_no_out DESCRIPTION PATTERN
  if ! grep -q -- "$2" "$out"; then pass "$1"; else fail "$1" "stdout matches '$2': $(show)"; fi
}
# json_get FILE KEY.PATH: prints the value at a dotted path of a JSON file.
json_get() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[int(key)] if isinstance(value, list) else value[key]
print(json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else value)' "$1" "$2"
}

S=$work/store

# --- usage and operational errors ----------------------------------------------
cas fsck
expect_error 16 "fsck without STORE is a usage error" "STORE"
cas fsck "$work/whatever" --no-such-option
expect_error 16 "an unknown option is a usage error" "no-such-option"
cas fsck "$work/one" "$work/two"
expect_error 16 "a second STORE is a usage error"
cas fsck --help
expect_rc 0 "fsck --help"
expect_out "--help names --repair" "--repair"

cas fsck "$work/missing"
expect_error 8 "a missing store is an operational error"
mkdir -p "$work/not-a-store"
cas fsck "$work/not-a-store"
expect_error 8 "a directory that is not a store is an operational error"

# --- a store never mounted -------------------------------------------------------
cas mkfs "$S"
expect_rc 0 "mkfs"
cas fsck "$S"
expect_rc 0 "fsck of a fresh store"
expect_out "a fresh store is clean and holds no filesystem yet" "clean; no filesystem"

# --- a filesystem made through a mount ---------------------------------------------
if [[ ! -c /dev/fuse ]] || ! command -v fusermount3 >/dev/null || ! command -v flock >/dev/null; then
  echo "skip  the checks on a mounted store: this machine cannot mount FUSE filesystems"
  echo "$passed passed, $failed failed"
  ((failed == 0))
  exit
fi

mkdir -p "$mnt"
unmount() {
  fusermount3 -u "$mnt" || return 1
  # The daemon writes everything out after the unmount, then lets go of the lock.
  local i
  for ((i = 0; i < 300; i++)); do
    flock -n "$S/run/lock" true && return 0
    sleep 0.1
  done
  return 1
}

# intake=0: every chunk a loose file, so that one can be deleted below.
timeout 60 "$casfs" mount "$S" "$mnt" -o intake=0 >"$work/mount.out" 2>&1
rc=$?
if [[ $rc -ne 0 ]] || ! mountpoint -q "$mnt"; then
  fail "mount" "exit $rc: $(cat "$work/mount.out")"
  echo "$passed passed, $failed failed"
  exit 1
fi
pass "mount"
mkdir -p "$mnt/docs/deep"
printf 'fsck victim: a file whose only chunk goes missing\n' >"$mnt/docs/deep/victim"
printf 'fsck: a file whose refcount is damaged\n' >"$mnt/docs/counted"
head -c $((600 << 10)) /dev/urandom >"$mnt/random"
ln "$mnt/docs/deep/victim" "$mnt/victim-link"
ln -s random "$mnt/link"

cas fsck "$S"
expect_error 8 "fsck of a mounted store is an operational error" "is mounted; unmount it first"

if unmount; then pass "unmount"; else fail "unmount" "the daemon did not let go of $S"; fi

cas fsck "$S"
expect_rc 0 "fsck of a filesystem written through a mount"
expect_out "the summary says clean and counts the inodes" "clean; 7 inodes (3 directories, 3 files, 1 symlink)"
cas fsck "$S" --json
expect_rc 0 "fsck --json"
expect_eq "--json: clean" "true" "$(json_get "$out" clean)"
expect_eq "--json: exit_code" "0" "$(json_get "$out" exit_code)"
expect_eq "--json: no problems" "[]" "$(json_get "$out" problems)"
expect_eq "--json: files counted" "3" "$(json_get "$out" counts.files)"
cas fsck "$S" --repair
expect_rc 0 "fsck --repair of a clean filesystem changes nothing and exits 0"

# --- a refcount released behind the filesystem's back: found, corrected ------------
R=$work/refcount-store
cp -a "$S" "$R"
counted=$(printf 'fsck: a file whose refcount is damaged\n' | sha256sum | cut -d' ' -f1)
cas store rm "$R" "$counted"
expect_rc 0 "store rm releases the file's only reference"
cas fsck "$R"
expect_rc 4 "a wrong refcount is an error left uncorrected without --repair"
expect_out "the refcount problem is named" "^refcount: object $counted: refcount 0 but 1 extent names it"
expect_out "it says what --repair would do" "(--repair: set to 1)"
cas fsck "$R" --repair
expect_rc 1 "--repair corrects the refcount (exit 1)"
expect_out "the line says it was fixed" "(fixed: set to 1)"
cas fsck "$R"
expect_rc 0 "after --repair fsck is clean"

# --- a chunk's object file deleted: data lost, named by path -----------------------
L=$work/lost-store
cp -a "$S" "$L"
victim=$(printf 'fsck victim: a file whose only chunk goes missing\n' | sha256sum | cut -d' ' -f1)
if [[ -f "$L/loose/${victim:0:2}/${victim:2}" ]]; then
  pass "the victim's chunk is a loose object"
else
  fail "the victim's chunk is a loose object" "$(ls -R "$L/loose" | head)"
fi
rm -f "$L/loose/${victim:0:2}/${victim:2}"
cas fsck "$L"
expect_rc 4 "a missing object is an error left uncorrected"
expect_out "the bad object names the file's paths" "^bad-object: .*$victim.*used by /docs/deep/victim, /victim-link"
expect_out "the lost file is listed by path" "^lost: /docs/deep/victim$"
expect_out "and by its second name" "^lost: /victim-link$"
expect_out "the summary counts it" "data lost in 1 file"
cas fsck "$L" --json
expect_rc 4 "--json on a damaged store"
expect_eq "--json: lost_files" '["/docs/deep/victim", "/victim-link"]' "$(json_get "$out" lost_files)"
expect_eq "--json: not clean" "false" "$(json_get "$out" clean)"
cas fsck "$L" --repair
expect_rc 4 "--repair cannot bring lost data back (exit 4)"
expect_out "after --repair the file is still listed" "^lost: /docs/deep/victim$"
cas fsck "$L"
expect_rc 4 "lost data stays an uncorrected error"
expect_out "the extent naming the missing object is reported" "^data-lost: /\(docs/deep/victim\|victim-link\): 1 extent"
expect_no_out "no other file is reported" "random"

# --- the index gone -----------------------------------------------------------------
M=$work/no-index-store
cp -a "$S" "$M"
rm -rf "$M/meta"
cas fsck "$M"
expect_rc 4 "a missing index is an error left uncorrected"
expect_out "it is named" "^index: the index (meta/) is missing"
if [[ -e "$M/meta" ]]; then fail "a check does not create meta/" "$(ls -la "$M")"; else pass "a check does not create meta/"; fi
cas fsck "$M" --repair
expect_rc 4 "--repair rebuilds the index but the names were in it too (exit 4)"
expect_out "the index was rebuilt" "(fixed: rebuilt from the packs and loose files"
cas fsck "$M"
expect_rc 0 "after the rebuild the store is consistent"
cas store cat "$M" "$victim"
expect_rc 0 "the objects survive the rebuild"

finish
