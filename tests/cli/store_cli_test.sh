#!/usr/bin/env bash
# End-to-end test of `casfs store …` as scripts use it: output formats, exit codes,
# byte-identical reads, dedup, pack/gc/verify/rebuild-index, corruption and error
# handling. Run by ctest once per io engine (CASFS_IO=uring and CASFS_IO=sync):
#
#   bash store_cli_test.sh /path/to/casfs
#
# Every check prints "ok" or "FAIL" with what was expected; the last line is
# "N passed, M failed" and the exit status is non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bg_pid=
cleanup() {
  [[ -n "$bg_pid" ]] && kill "$bg_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# An error is one line on stderr that starts with "casfs: ", and a non-zero exit.
expect_error() {  # expect_error DESCRIPTION [WANT_RC]
  local want=${2:-}
  local lines
  lines=$(wc -l <"$err")
  if [[ $rc -eq 0 ]]; then
    fail "$1" "want a non-zero exit, got: $(show)"
  elif [[ -n "$want" && $rc -ne $want ]]; then
    fail "$1" "want exit $want, got: $(show)"
  elif [[ $lines -ne 1 ]] || ! grep -q '^casfs: ' "$err"; then
    fail "$1" "want one line 'casfs: …' on stderr, got $lines lines: $(show)"
  else
    pass "$1 ($(cat "$err"))"
  fi
}
expect_same() {  # expect_same DESCRIPTION FILE_A FILE_B
  if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ: $(cmp "$2" "$3" 2>&1)"; fi
}

# json_get FILE KEY.PATH: prints the value at a dotted path of a JSON file.
json_get() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)' "$1" "$2"
}
# A listing of every file under a directory with its size and checksum, to prove
# that a failed command changed nothing.
snapshot() {
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) 2>/dev/null
  (cd "$1" && find . | sort)
}

# What a store holds, as its commands report it (its files change on every open:
# LMDB keeps a reader table), to prove that a failed command changed nothing.
state() {
  "$casfs" store ls "$1"
  "$casfs" store status "$1" --json
}

# From stdin, so names that sha256sum escapes do not change its output.
sha() { sha256sum <"$1" | cut -d' ' -f1; }

# --- test data ---------------------------------------------------------------
data=$work/data
mkdir -p "$data/subdir"
: >"$data/empty"
printf 'hello, casfs\n' >"$data/small"
head -c $((20 << 20)) /dev/urandom >"$data/random"
seq 1 1500000 >"$data/text"            # ~10 MB that compresses well
printf 'same bytes\n' >"$data/dup one" # a space in the name, as sha256sum prints it
cp "$data/dup one" "$data/dup two"
printf 'to be removed (loose)\n' >"$data/doomed-loose"
printf 'to be removed (packed)\n' >"$data/doomed-packed"

S=$work/store

# --- basics ------------------------------------------------------------------
cas --version
if [[ $rc -eq 0 ]] && grep -Eq '^casfs [0-9]+\.[0-9]+' "$out"; then
  pass "--version prints 'casfs X.Y…' ($(cat "$out"))"
else
  fail "--version prints 'casfs X.Y…'" "$(show)"
fi

cas store init "$S"
expect_rc 0 "store init"
if [[ -f "$S/casfs.json" ]]; then pass "init writes casfs.json"; else fail "init writes casfs.json" "$(ls -la "$S" 2>&1)"; fi

before=$(snapshot "$S")
cas store init "$S"
expect_error "init refuses an existing store"
expect_eq "failed init changes nothing" "$before" "$(snapshot "$S")"

files=("$data/empty" "$data/small" "$data/random" "$data/text" "$data/dup one" "$data/doomed-packed")
cas store add "$S" "${files[@]}"
expect_rc 0 "store add of ${#files[@]} files"
sha256sum "${files[@]}" >"$work/want-add"
expect_same "add prints exactly what sha256sum prints" "$work/want-add" "$out"

# Relative names and names sha256sum escapes come out the same way too.
(cd "$data" && "$casfs" store add "$S" small "dup one" >"$out" 2>"$err")
(cd "$data" && sha256sum small "dup one" >"$work/want-add")
expect_same "add with relative names matches sha256sum" "$work/want-add" "$out"

odd=$data/$'odd\\name\nwith newline'
printf 'odd\n' >"$odd"
cas store add "$S" "$odd"
sha256sum "$odd" >"$work/want-add"
expect_same "add escapes odd names as sha256sum does" "$work/want-add" "$out"

printf 'from stdin\n' | "$casfs" store add "$S" - >"$out" 2>"$err"
rc=$?
printf 'from stdin\n' | sha256sum >"$work/want-add"
expect_rc 0 "add - reads standard input"
expect_same "add - prints what sha256sum prints for stdin" "$work/want-add" "$out"

# --- dedup -------------------------------------------------------------------
cas store ls "$S"
count_before=$(wc -l <"$out")
cas store add "$S" "$data/dup two" "$data/dup one" "$data/small"
expect_rc 0 "add of already stored content"
cas store ls "$S"
expect_eq "adding the same content again adds no object" "$count_before" "$(wc -l <"$out")"
expect_eq "two files with the same bytes share one id in ls" 1 "$(grep -c "^$(sha "$data/dup one")\$" "$out")"
if sort -c "$out" 2>/dev/null; then pass "ls is sorted by id"; else fail "ls is sorted by id" "$(head -5 "$out")"; fi
if grep -Eqv '^[0-9a-f]{64}$' "$out"; then
  fail "ls prints one hex id per line" "$(grep -Ev '^[0-9a-f]{64}$' "$out" | head -3)"
else
  pass "ls prints one hex id per line"
fi

# --- reading back ------------------------------------------------------------
check_cat() {  # check_cat LABEL
  local f
  for f in empty small random text; do
    "$casfs" store cat "$S" "$(sha "$data/$f")" >"$work/cat" 2>"$err"
    rc=$?
    if [[ $rc -eq 0 ]] && cmp -s "$data/$f" "$work/cat"; then
      pass "cat returns identical bytes: $f ($1)"
    else
      fail "cat returns identical bytes: $f ($1)" "rc=$rc $(cmp "$data/$f" "$work/cat" 2>&1) stderr=$(cat "$err")"
    fi
  done
}
check_cat loose

# --- status ------------------------------------------------------------------
cas store ls "$S"
objects=$(wc -l <"$out")
# Every distinct object once: the sizes of the files whose content is distinct.
raw_bytes=$(for f in "$data"/* ; do [[ -f "$f" ]] && echo "$(sha "$f") $(stat -c %s "$f")"; done \
  | awk -v ids="$out" 'BEGIN { while ((getline id < ids) > 0) want[id] = 1 }
                       ($1 in want) && !($1 in seen) { seen[$1] = 1; sum += $2 } END { print sum + 0 }')
raw_bytes=$((raw_bytes + $(printf 'from stdin\n' | wc -c)))

cas store status "$S" --json
expect_rc 0 "status --json"
cp "$out" "$work/status.json"
if python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/status.json" 2>/dev/null; then
  pass "status --json is valid JSON"
else
  fail "status --json is valid JSON" "$(head -c 300 "$work/status.json")"
fi
for key in objects.loose objects.packed bytes.raw bytes.stored packs bytes.dead bytes.pack_files \
  objects.unreferenced io_engine; do
  if json_get "$work/status.json" "$key" >/dev/null 2>&1; then
    pass "status --json has $key"
  else
    fail "status --json has $key" "$(cat "$work/status.json")"
  fi
done
expect_eq "objects.loose counts every object before pack" "$objects" "$(json_get "$work/status.json" objects.loose)"
expect_eq "objects.packed is 0 before pack" 0 "$(json_get "$work/status.json" objects.packed)"
expect_eq "packs is 0 before pack" 0 "$(json_get "$work/status.json" packs)"
expect_eq "bytes.raw is the sum of distinct contents" "$raw_bytes" "$(json_get "$work/status.json" bytes.raw)"
expect_eq "loose objects are stored raw" "$raw_bytes" "$(json_get "$work/status.json" bytes.stored)"
engine=$(json_get "$work/status.json" io_engine)
case "${CASFS_IO:-}" in
  sync) expect_eq "io_engine follows CASFS_IO=sync" sync "$engine" ;;
  uring) expect_eq "io_engine follows CASFS_IO=uring" io_uring "$engine" ;;
  *) expect_eq "io_engine is io_uring or sync" ok "$([[ $engine == io_uring || $engine == sync ]] && echo ok)" ;;
esac

cas store status "$S"
expect_rc 0 "status (human)"

# --- pack --------------------------------------------------------------------
cas store pack "$S"
expect_rc 0 "pack"
expect_eq "pack prints a one-line summary and no progress when not on a terminal" "1 0" \
  "$(wc -l <"$out") $(wc -c <"$err")"
cas store status "$S" --json
cp "$out" "$work/status.json"
expect_eq "after pack every object is packed" "$objects 0" \
  "$(json_get "$work/status.json" objects.packed) $(json_get "$work/status.json" objects.loose)"
if (($(json_get "$work/status.json" packs) >= 1)); then pass "after pack there is a pack"; else fail "after pack there is a pack" "$(cat "$work/status.json")"; fi
stored=$(json_get "$work/status.json" bytes.stored)
if ((stored < raw_bytes)); then
  pass "pack compresses ($raw_bytes → $stored bytes)"
else
  fail "pack compresses" "raw $raw_bytes, stored $stored"
fi
expect_eq "bytes.raw unchanged by pack" "$raw_bytes" "$(json_get "$work/status.json" bytes.raw)"
check_cat packed

cas store pack "$S"
expect_rc 0 "pack with nothing loose"

# --- rm and gc ---------------------------------------------------------------
cas store add "$S" "$data/doomed-loose"
loose_id=$(sha "$data/doomed-loose")
packed_id=$(sha "$data/doomed-packed")
cas store rm "$S" "$loose_id" "$packed_id"
expect_rc 0 "rm of a loose and a packed object"
cas store status "$S" --json
expect_eq "rm leaves two unreferenced objects" 2 "$(json_get "$out" objects.unreferenced)"
cas store rm "$S" "$loose_id"
expect_error "rm of an object with no references left"
cas store gc "$S"
expect_rc 0 "gc"
cas store ls "$S"
if grep -q -e "$loose_id" -e "$packed_id" "$out"; then
  fail "gc removes unreferenced objects from ls" "$(grep -e "$loose_id" -e "$packed_id" "$out")"
else
  pass "gc removes unreferenced objects from ls"
fi
for id in "$loose_id" "$packed_id"; do
  cas store cat "$S" "$id"
  expect_error "cat after gc fails"
  expect_eq "cat after gc writes nothing to stdout" 0 "$(wc -c <"$out")"
done
cas store status "$S" --json
expect_eq "no unreferenced objects after gc" 0 "$(json_get "$out" objects.unreferenced)"
if (($(json_get "$out" bytes.dead) > 0)); then pass "gc of a packed object leaves dead pack bytes"; else fail "gc of a packed object leaves dead pack bytes" "$(cat "$out")"; fi

cas store repack "$S" --threshold 0
expect_rc 0 "repack --threshold 0"
cas store status "$S" --json
expect_eq "repack drops dead bytes" 0 "$(json_get "$out" bytes.dead)"
check_cat repacked
cas store repack "$S" --threshold 150
expect_error "repack --threshold out of range is a usage error" 2

cas store verify "$S"
expect_rc 0 "verify of a clean store"

# --- corruption --------------------------------------------------------------
C=$work/corrupt
"$casfs" store init "$C" >/dev/null
"$casfs" store add "$C" "$data/text" >/dev/null
"$casfs" store pack "$C" >/dev/null
text_id=$(sha "$data/text")
packs=("$C"/packs/*.pack)
if [[ ${#packs[@]} -eq 1 && -f "${packs[0]}" ]]; then
  pack=${packs[0]}
  size=$(stat -c %s "$pack")
  offset=$((size / 2)) # inside the only record's payload
  byte=$(od -An -tu1 -j "$offset" -N1 "$pack" | tr -d ' ')
  printf '%b' "\\0$(printf %03o $((byte ^ 0xff)))" | dd of="$pack" bs=1 seek="$offset" conv=notrunc status=none
  cas store verify "$C"
  expect_rc 1 "verify finds a flipped byte in a pack"
  if grep -q "$text_id" "$out" "$err"; then pass "verify names the damaged object"; else fail "verify names the damaged object" "$(show)"; fi
  cas store cat "$C" "$text_id"
  expect_error "cat of a damaged object fails" 1
  expect_eq "cat of a damaged object writes nothing to stdout" 0 "$(wc -c <"$out")"
else
  fail "pack of one file makes one pack file" "$(ls -la "$C/packs" 2>&1)"
fi

# --- errors: nothing changes -------------------------------------------------
cas store ls "$work/missing"
expect_error "ls of a missing store" 1
if [[ -e "$work/missing" ]]; then fail "a missing store is not created" "$(ls -la "$work/missing")"; else pass "a missing store is not created"; fi
cas store add "$work/missing" "$data/small"
expect_error "add to a missing store" 1

N=$work/not-a-store
mkdir -p "$N"
echo "precious" >"$N/file"
before=$(snapshot "$N")
cas store ls "$N"
expect_error "ls of a directory that is not a store" 1
cas store add "$N" "$data/small"
expect_error "add to a directory that is not a store" 1
cas store pack "$N"
expect_error "pack of a directory that is not a store" 1
expect_eq "a directory that is not a store is left alone" "$before" "$(snapshot "$N")"

V=$work/newer
"$casfs" store init "$V" >/dev/null
python3 -c '
import json, sys
path = sys.argv[1] + "/casfs.json"
config = json.load(open(path))
config["version"] = int(config["version"]) + 1
json.dump(config, open(path, "w"))' "$V"
before=$(snapshot "$V")
cas store ls "$V"
expect_error "ls of a store with a newer format version" 1
cas store add "$V" "$data/small"
expect_error "add to a store with a newer format version" 1
expect_eq "a newer store is left alone" "$before" "$(snapshot "$V")"

before=$(state "$S")
cas store cat "$S" not-a-hash
expect_error "cat of a non-hex hash" 1
cas store cat "$S" "$(printf 'g%.0s' {1..64})"
expect_error "cat of 64 non-hex characters" 1
cas store rm "$S" "$(sha "$data/small")" xyz
expect_error "rm with one bad hash" 1
absent=$(printf 'never added\n' | sha256sum | cut -d' ' -f1)
cas store cat "$S" "$absent"
expect_error "cat of an absent hash" 1
expect_eq "cat of an absent hash writes nothing" 0 "$(wc -c <"$out")"
cas store add "$S" "$data/small" "$data/subdir" "$data/empty"
# Besides the error, a batch of files gets a summary line on stderr.
if [[ $rc -eq 1 ]] && [[ $(grep -c '^casfs: ' "$err") -eq 1 ]] && grep -q "^casfs: .*subdir" "$err"; then
  pass "add with a directory argument: exit 1, one error line naming it ($(grep '^casfs: ' "$err"))"
else
  fail "add with a directory argument: exit 1, one error line naming it" "$(show)"
fi
sha256sum "$data/small" "$data/empty" >"$work/want-add"
expect_same "add with a directory argument still adds the others" "$work/want-add" "$out"
"$casfs" store rm "$S" "$(sha "$data/small")" "$(sha "$data/empty")" >/dev/null # undo those refs
expect_eq "failed commands change nothing in the store" "$before" "$(state "$S")"

cas store
expect_error "store without a subcommand is a usage error" 2
cas bogus
expect_error "an unknown command is a usage error" 2
cas store cat "$S"
expect_error "a missing argument is a usage error" 2

# A second process is refused while one holds the store.
L=$work/locked
"$casfs" store init "$L" >/dev/null
mkfifo "$work/fifo"
"$casfs" store add "$L" - <"$work/fifo" >"$work/bg.out" 2>&1 &
bg_pid=$!
exec 3>"$work/fifo"
# Wait until the background add holds the lock (its pid is in run/lock): polling
# with other casfs processes before that could take the lock from under it.
for _ in $(seq 1 200); do
  [[ "$(cat "$L/run/lock" 2>/dev/null)" == "$bg_pid" ]] && break
  sleep 0.05
done
cas store ls "$L"
if [[ $rc -ne 0 ]] && grep -q "pid $bg_pid" "$err"; then
  expect_error "a store in use by another process is refused, naming its pid" 1
else
  fail "a store in use by another process is refused, naming its pid" "$(show)"
fi
printf 'locked\n' >&3
exec 3>&-
wait "$bg_pid"
bg_rc=$?
bg_pid=
expect_eq "the process holding the lock finishes its add" "0 $(printf 'locked\n' | sha256sum | cut -d' ' -f1)  -" \
  "$bg_rc $(cat "$work/bg.out")"

# --- mkfs --------------------------------------------------------------------
cas mkfs "$work/fs"
expect_rc 0 "mkfs"
cas store ls "$work/fs"
expect_eq "mkfs makes an empty store" "0 0" "$rc $(wc -c <"$out")"

# --- rebuild-index -----------------------------------------------------------
R=$work/rebuild
"$casfs" store init "$R" >/dev/null
"$casfs" store add "$R" "$data/small" "$data/text" "$data/empty" >/dev/null
"$casfs" store pack "$R" >/dev/null
"$casfs" store add "$R" "$data/dup one" "$data/random" >/dev/null # these stay loose
"$casfs" store ls "$R" | sort >"$work/ls-before"
rm -rf "$R/meta"
cas store rebuild-index "$R"
expect_rc 0 "rebuild-index after rm -rf meta"
"$casfs" store ls "$R" | sort >"$work/ls-after"
expect_same "rebuild-index restores ls" "$work/ls-before" "$work/ls-after"
for f in text random; do
  "$casfs" store cat "$R" "$(sha "$data/$f")" >"$work/cat" 2>"$err"
  expect_same "cat after rebuild-index: $f" "$data/$f" "$work/cat"
done
cas store verify "$R"
expect_rc 0 "verify after rebuild-index"

# --- upgrade -----------------------------------------------------------------
U=$work/upgrade
"$casfs" store init "$U" >/dev/null
set_version() { # set_version STORE N
  python3 -c '
import json, sys
path = sys.argv[1] + "/casfs.json"
config = json.load(open(path))
config["version"] = int(sys.argv[2])
json.dump(config, open(path, "w"))' "$1" "$2"
}
version_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1] + "/casfs.json"))["version"])' "$1"; }
current=$(version_of "$U")
set_version "$U" 1
head -c 300000 /dev/urandom >"$work/chunky" # packed raw: gets block sums from the upgrade
"$casfs" store add "$U" "$data/text" "$work/chunky" >/dev/null
"$casfs" store pack "$U" >/dev/null
"$casfs" store add "$U" "$data/small" >/dev/null # stays loose
cas store upgrade "$U"
expect_rc 0 "upgrade of a version 1 store"
expect_eq "  says what it did" "upgraded store $U from format version 1 to $current" "$(head -n1 "$out" | sed 's/ (.*//')"
expect_eq "  casfs.json has the new version" "$current" "$(version_of "$U")"
cas store verify "$U"
expect_rc 0 "  verify is clean (block sums computed)"
for f in "$data/text" "$work/chunky" "$data/small"; do
  "$casfs" store cat "$U" "$(sha "$f")" >"$work/cat" 2>"$err"
  expect_same "  cat after upgrade: $(basename "$f")" "$f" "$work/cat"
done
cas store upgrade "$U"
expect_eq "upgrade of a current store changes nothing" "0 store $U is at format version $current already" \
  "$rc $(cat "$out")"

finish
