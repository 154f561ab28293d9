#!/usr/bin/env bash
# A real casfs mount used with ordinary tools: cp, diff, tar, rsync, git, sqlite3, find,
# du, ln, mkfifo, setfattr/getfattr, chmod, chown, touch, truncate, dd, mv, and an
# unlinked-but-open file, on a real tree (/usr/include, ~9,000 files, or the tree named
# by CASFS_TEST_TREE). Then it unmounts, mounts again and checks that everything
# persisted: contents, modes, owners, mtimes, inode numbers, link counts, xattrs,
# symlinks, the fifo, sparse and >4 GiB files, the git repositories and databases.
#
#   bash tools_test.sh /path/to/casfs        (ctest sets CASFS_IO=uring or sync)
#
# Every check prints "ok" or "FAIL"; the last line is "N passed, M failed".
# Not covered: `mv --exchange` (coreutils 9.1 on Debian 12 does not have it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_tools cp diff tar rsync git sqlite3 setfattr getfattr truncate dd du stat mkfifo \
  ln mv touch chmod chown cmp head tail xargs

SRC=${CASFS_TEST_TREE:-/usr/include}
SRC=$(realpath "$SRC")
if [[ ! -d "$SRC" ]] || (($(find "$SRC" -maxdepth 2 -type f | head -n 100 | wc -l) < 100)); then
  echo "$LIB_NAME: $SRC is not a tree of files to copy (set CASFS_TEST_TREE)" >&2
  exit 2
fi

# git must not read the user's configuration, nor need a name.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$WORK/gitconfig
cat >"$GIT_CONFIG_GLOBAL" <<'EOF'
[user]
	name = casfs test
	email = casfs-test@example.invalid
[init]
	defaultBranch = main
[gc]
	auto = 0
[safe]
	directory = *
EOF

GiB=$((1 << 30))
MiB=$((1 << 20))

# --- workloads: each takes the directory it works in ------------------------------

wl_copy() {
  local d=$1
  check "cp -a of $SRC into the mount" t cp -a "$SRC" "$d/cp" || return
  check "diff -r finds no difference between the source and its cp -a copy" \
    t diff -r --no-dereference "$SRC" "$d/cp"
  tree_sums "$d/cp" >"$WORK/cp.sums"
  expect_same "sha256 of every file of the cp -a copy equals the source's" "$WORK/src.sums" "$WORK/cp.sums"
  tree_manifest "$d/cp" >"$WORK/cp.manifest"
  expect_same "cp -a keeps types, modes, owners, sizes, link counts, mtimes (ns) and symlink targets" \
    "$WORK/src.manifest" "$WORK/cp.manifest"
}

# tar_copy FROM TO: `tar c` of FROM extracted into TO (pax format: mtimes keep their ns).
tar_copy() {
  mkdir -p "$2" &&
    t tar -C "$1" --format=posix --numeric-owner -cf - . | t tar -C "$2" --numeric-owner -xpf -
}

wl_tar() {
  local d=$1
  check "tar c of the cp -a copy in the mount (extracted outside it)" tar_copy "$d/cp" "$WORK/tar-mnt"
  tree_sums "$WORK/tar-mnt" >"$WORK/tar-mnt.sums"
  expect_same "tar c of the mount extracts to the same contents as tar c of the source" \
    "$WORK/tar-src.sums" "$WORK/tar-mnt.sums"
  tree_manifest "$WORK/tar-mnt" >"$WORK/tar-mnt.manifest"
  expect_same "tar c of the mount extracts to the same metadata as tar c of the source" \
    "$WORK/tar-src.manifest" "$WORK/tar-mnt.manifest"
  rm -rf "$WORK/tar-mnt"

  check "tar x of the source into the mount" tar_copy "$SRC" "$d/untar" || return
  tree_sums "$d/untar" >"$WORK/untar.sums"
  expect_same "sha256 of every file extracted by tar x equals the source's" "$WORK/src.sums" "$WORK/untar.sums"
  tree_manifest "$d/untar" >"$WORK/untar.manifest"
  expect_same "tar x sets types, modes, owners, sizes, mtimes (ns) and symlink targets" \
    "$WORK/src.manifest" "$WORK/untar.manifest"
}

wl_rsync() {
  local d=$1 out rc
  check "rsync -a of the source into the mount" t rsync -a "$SRC/" "$d/rsync/" || return
  tree_sums "$d/rsync" >"$WORK/rsync.sums"
  expect_same "sha256 of every file copied by rsync -a equals the source's" "$WORK/src.sums" "$WORK/rsync.sums"
  tree_manifest "$d/rsync" >"$WORK/rsync.manifest"
  expect_same "rsync -a keeps types, modes, owners, sizes, mtimes and symlink targets" \
    "$WORK/src.manifest" "$WORK/rsync.manifest"
  out=$(t rsync -a --itemize-changes "$SRC/" "$d/rsync/" 2>&1)
  rc=$?
  expect_eq "a second rsync -a (size and mtime) finds nothing to transfer" "exit 0 []" "exit $rc [$(head -n 10 <<<"$out")]"
  out=$(t rsync -a --checksum --itemize-changes "$SRC/" "$d/rsync/" 2>&1)
  rc=$?
  expect_eq "a second rsync -a --checksum finds nothing to transfer" "exit 0 []" "exit $rc [$(head -n 10 <<<"$out")]"
}

wl_find_du() {
  local d=$1 got dirs want
  lib_find "$d/cp" -- -print | sort >"$WORK/cp.list"
  expect_same "find lists the same entries in the copy as in the source" "$WORK/src.list" "$WORK/cp.list"
  lib_find "$SRC" -- -type f -name '*.h' -size +8k -print | sort >"$WORK/src.find"
  lib_find "$d/cp" -- -type f -name '*.h' -size +8k -print | sort >"$WORK/cp.find"
  expect_same "find -type f -name '*.h' -size +8k agrees with the source" "$WORK/src.find" "$WORK/cp.find"
  lib_find "$SRC" -- \( -type l -o -empty \) -print | sort >"$WORK/src.find"
  lib_find "$d/cp" -- \( -type l -o -empty \) -print | sort >"$WORK/cp.find"
  expect_same "find -type l -o -empty agrees with the source" "$WORK/src.find" "$WORK/cp.find"
  got=$(t du -sb "$d/cp" | cut -f1)
  dirs=$(lib_find "$d/cp" -- -type d -printf '%s\n' | awk '{ sum += $1 } END { print sum + 0 }')
  want=$((SRC_FILE_BYTES + dirs))
  expect_eq "du -sb of the copy = the source's apparent file size ($SRC_FILE_BYTES) + the copy's directory sizes ($dirs)" \
    "$want" "$got"
}

git_first_commit() { # git_first_commit REPO: the files of git.list, committed
  t tar -C "$SRC" -cf - -T "$WORK/git.list" | t tar -C "$1" -xf - &&
    t git -C "$1" add -A && t git -C "$1" commit -q -m "first: $(wc -l <"$WORK/git.list") files"
}
git_second_commit() { # an edit, a removal, a rename and a 1 MiB binary file
  local r=$1 edit remove rename
  edit=$(sed -n 1p "$WORK/git.list")
  remove=$(sed -n 2p "$WORK/git.list")
  rename=$(sed -n 3p "$WORK/git.list")
  printf '/* edited in casfs */\n' >>"$r/$edit" &&
    t git -C "$r" rm -q "$remove" &&
    t git -C "$r" mv "$rename" "$rename.renamed" &&
    head -c "$MiB" "$WORK/random" >"$r/binary.dat" &&
    t git -C "$r" add -A && t git -C "$r" commit -q -m second
}
git_clean() { [[ -z "$(t git -C "$1" status --porcelain)" ]]; }

wl_git() {
  local r=$1/repo c=$1/clone c2=$1/clone-nolocal
  lib_find "$SRC" -- -type f -print | sort | head -n 1500 >"$WORK/git.list"
  mkdir -p "$r"
  check "git init in the mount" t git -C "$r" init -q || return
  check "git add + commit of $(wc -l <"$WORK/git.list") files" git_first_commit "$r" || return
  check "git commit of an edit, a git rm, a git mv and a binary file" git_second_commit "$r"
  check "git gc --prune=now (repacks, rewrites refs) in the mount" t git -C "$r" gc -q --prune=now
  check "git fsck --full of the repository" t git -C "$r" fsck --full --no-progress
  check "git clone (local: hard-links the objects) elsewhere in the mount" t git clone -q "$r" "$c" || return
  check "git fsck --full of the clone" t git -C "$c" fsck --full --no-progress
  expect_eq "the clone's HEAD is the repository's" "$(git -C "$r" rev-parse HEAD 2>&1)" "$(git -C "$c" rev-parse HEAD 2>&1)"
  check "the clone's checkout equals the repository's work tree" t diff -r --exclude=.git "$r" "$c"
  check "git status in the clone is clean" git_clean "$c"
  check "git clone --no-local (index-pack) elsewhere in the mount" t git clone -q --no-local "$r" "$c2"
  check "git fsck --full of the --no-local clone" t git -C "$c2" fsck --full --no-progress
}

sqlite_script() { # 500 inserts, each in its own transaction
  local i
  echo "create table t(id integer primary key, v text not null);"
  for ((i = 1; i <= 500; i++)); do
    printf "begin; insert into t(v) values('row %d %0200d'); commit;\n" "$i" "$i"
  done
}
sqlite_run() { t sqlite3 -bail "$1" <"$2"; }
sqlite_q() { t sqlite3 "$1" "$2" 2>&1; }

wl_sqlite() {
  local d=$1/sqlite
  mkdir -p "$d"
  sqlite_script >"$WORK/inserts.sql"
  { echo 'pragma journal_mode=wal;' && cat "$WORK/inserts.sql"; } >"$WORK/inserts-wal.sql"
  check "sqlite3: 500 inserts, one transaction each (rollback journal)" sqlite_run "$d/journal.db" "$WORK/inserts.sql"
  expect_eq "sqlite3 (rollback journal): count(*) is 500" 500 "$(sqlite_q "$d/journal.db" 'select count(*) from t')"
  expect_eq "sqlite3 (rollback journal): integrity_check" ok "$(sqlite_q "$d/journal.db" 'pragma integrity_check')"
  check "sqlite3: 500 inserts, one transaction each (WAL, shared-memory mmap)" sqlite_run "$d/wal.db" "$WORK/inserts-wal.sql"
  expect_eq "sqlite3 (WAL): count(*) is 500" 500 "$(sqlite_q "$d/wal.db" 'select count(*) from t')"
  expect_eq "sqlite3 (WAL): integrity_check" ok "$(sqlite_q "$d/wal.db" 'pragma integrity_check')"
  echo "update t set v = v || ' updated' where id % 3 = 0; delete from t where id % 5 = 0; vacuum;" >"$WORK/update.sql"
  check "sqlite3: update, delete and vacuum" sqlite_run "$d/journal.db" "$WORK/update.sql"
  expect_eq "sqlite3: count(*) is 400 after the delete" 400 "$(sqlite_q "$d/journal.db" 'select count(*) from t')"
  expect_eq "sqlite3: integrity_check after vacuum" ok "$(sqlite_q "$d/journal.db" 'pragma integrity_check')"
}

wl_links() {
  local d=$1/links
  mkdir -p "$d/sub"
  printf 'first\n' >"$d/a"
  check "ln makes a hard link" ln "$d/a" "$d/b"
  expect_eq "stat -c %h is 2 for both names" "2 2" "$(stat -c %h "$d/a" "$d/b" | xargs)"
  expect_eq "both names have one inode" "$(stat -c %i "$d/a")" "$(stat -c %i "$d/b")"
  printf 'second\n' >>"$d/b"
  expect_eq "a write through one name is read through the other" $'first\nsecond' "$(cat "$d/a")"
  check "ln into another directory" ln "$d/a" "$d/sub/c"
  expect_eq "stat -c %h is 3 with three names" 3 "$(stat -c %h "$d/a")"
  check "mv of a hard link within the mount" mv "$d/sub/c" "$d/sub/c3"
  ln "$d/a" "$d/doomed"
  check "rm of one of four names" rm "$d/doomed"
  expect_eq "stat -c %h is back to 3 after rm" 3 "$(stat -c %h "$d/b")"

  printf 'target content\n' >"$d/target"
  check "ln -s (relative target)" ln -s target "$d/sym"
  expect_eq "readlink of a symlink" target "$(readlink "$d/sym")"
  expect_eq "reading through a symlink" "target content" "$(cat "$d/sym")"
  expect_eq "stat -c %F of a symlink" "symbolic link" "$(stat -c %F "$d/sym")"
  check "ln -s to a directory" ln -s sub "$d/dirsym"
  expect_eq "listing a directory through a symlink" c3 "$(ls "$d/dirsym/")"
  check "ln -s to a missing target (dangling)" ln -s /nonexistent/casfs/target "$d/dangling"
  expect_eq "readlink of a dangling symlink" /nonexistent/casfs/target "$(readlink "$d/dangling")"
  check_fails "stat -L of a dangling symlink fails" stat -L "$d/dangling"
  LONG_TARGET=$(printf 'long/%.0s' {1..800})end # 4003 bytes
  check "ln -s with a 4003-byte target" ln -s "$LONG_TARGET" "$d/longsym"
  expect_eq "readlink of a 4003-byte target" "$LONG_TARGET" "$(readlink "$d/longsym")"
  expect_eq "stat -c %s of a symlink is its target's length" 4003 "$(stat -c %s "$d/longsym")"
}

fifo_roundtrip() { # fifo_roundtrip FIFO: a line through the fifo, both ends bounded
  local got
  (timeout 20 bash -c 'printf "through the fifo\n" >"$1"' _ "$1" &)
  got=$(timeout 20 cat "$1")
  [[ "$got" == "through the fifo" ]]
}

wl_fifo() {
  local d=$1/special
  mkdir -p "$d"
  check "mkfifo" mkfifo -m 0640 "$d/fifo"
  expect_eq "stat -c '%F %a' of a fifo" "fifo 640" "$(stat -c '%F %a' "$d/fifo")"
  check "a line through a fifo in the mount" fifo_roundtrip "$d/fifo"
}

# xattr_hex FILE NAME: the value as getfattr prints it in hex ("0x…").
# xattr_list FILE: the names and sha256 of the values of its user.* attributes.
xattr_list() {
  getfattr -h -d -m '^user\.' -e hex --absolute-names "$1" 2>&1 | grep -v '^# file:' |
    while IFS= read -r line; do [[ -n $line ]] && echo "${line%%=*} $(sha256sum <<<"${line#*=}" | cut -c1-16)"; done
}
xattr_hex() { getfattr -h -e hex -n "$2" --absolute-names "$1" 2>&1 | sed -n "s/^$2=//p"; }

wl_xattr() {
  local d=$1/xattr f=$1/xattr/file hex
  mkdir -p "$d"
  printf 'data\n' >"$f"
  check "setfattr -n user.text" setfattr -n user.text -v hello "$f"
  expect_eq "getfattr reads user.text back" hello "$(getfattr --absolute-names -n user.text --only-values "$f" 2>&1)"
  check "setfattr replaces a value" setfattr -n user.text -v 'hello again' "$f"
  expect_eq "getfattr reads the replaced value" 'hello again' "$(getfattr --absolute-names -n user.text --only-values "$f" 2>&1)"
  check "setfattr of a binary value with NUL, CR, LF and high bytes" setfattr -n user.bin -v 0x00ff0a0d7f8000 "$f"
  expect_eq "getfattr -e hex reads the binary value back" 0x00ff0a0d7f8000 "$(xattr_hex "$f" user.bin)"
  check "setfattr of an empty value" setfattr -n user.empty "$f"
  expect_eq "getfattr reads the empty value back" 0x "$(xattr_hex "$f" user.empty)"
  hex=0x$(head -c 3000 "$WORK/random" | od -An -v -tx1 | tr -d ' \n')
  check "setfattr of a 3000-byte binary value" setfattr -n user.large -v "$hex" "$f"
  expect_eq "getfattr reads the 3000-byte value back" "$hex" "$(xattr_hex "$f" user.large)"
  local i
  for i in $(seq -w 1 20); do setfattr -n "user.n$i" -v "value $i" "$f"; done
  expect_eq "getfattr -d lists 24 user attributes" 24 "$(getfattr -d -m '^user\.' --absolute-names "$f" 2>&1 | grep -c '^user\.')"
  check "setfattr -x removes an attribute" setfattr -x user.n20 "$f"
  check_fails "getfattr of a removed attribute fails" getfattr --absolute-names -n user.n20 "$f"
  expect_eq "getfattr -d lists 23 after the removal" 23 "$(getfattr -d -m '^user\.' --absolute-names "$f" 2>&1 | grep -c '^user\.')"
  check_fails "setfattr -x of a missing attribute fails" setfattr -x user.never "$f"
  check "setfattr on a directory" setfattr -n user.dir -v 'on a directory' "$d"
  expect_eq "getfattr on a directory" 'on a directory' "$(getfattr --absolute-names -n user.dir --only-values "$d" 2>&1)"
  ln "$f" "$d/hardlink"
  expect_eq "a hard link sees the same attributes" "$(xattr_hex "$f" user.bin)" "$(xattr_hex "$d/hardlink" user.bin)"
  check "cp -a of a file with attributes inside the mount" cp -a "$f" "$d/copy"
  expect_eq "cp -a copies the attributes" "$(xattr_list "$f")" "$(xattr_list "$d/copy")"
}

wl_meta() {
  local d=$1/meta
  mkdir -p "$d/sticky" "$d/owned-dir"
  touch "$d/mode" "$d/suid" "$d/none" "$d/owned" "$d/times" "$d/atime" "$d/old" "$d/future"
  check "chmod 0741" chmod 0741 "$d/mode"
  expect_eq "stat -c %a after chmod 0741" 741 "$(stat -c %a "$d/mode")"
  check "chmod 4755 (setuid)" chmod 4755 "$d/suid"
  expect_eq "stat -c %a after chmod 4755" 4755 "$(stat -c %a "$d/suid")"
  check "chmod 1777 of a directory (sticky)" chmod 1777 "$d/sticky"
  expect_eq "stat -c %a after chmod 1777" 1777 "$(stat -c %a "$d/sticky")"
  check "chmod 0000" chmod 0000 "$d/none"
  expect_eq "stat -c %a after chmod 0000" 0 "$(stat -c %a "$d/none")"
  if ((EUID == 0)); then
    check "chown 1234:5678 (numeric)" chown 1234:5678 "$d/owned"
    expect_eq "stat -c %u:%g after chown" 1234:5678 "$(stat -c %u:%g "$d/owned")"
    ln -s owned "$d/owned-link"
    check "chown -h 4321:8765 of a symlink" chown -h 4321:8765 "$d/owned-link"
    expect_eq "stat -c %u:%g of the symlink" 4321:8765 "$(stat -c %u:%g "$d/owned-link")"
    expect_eq "the symlink's target keeps its owner" 1234:5678 "$(stat -c %u:%g "$d/owned")"
    check "chown :2222 of a directory" chown :2222 "$d/owned-dir"
    expect_eq "stat -c %g of the directory" 2222 "$(stat -c %g "$d/owned-dir")"
  else
    echo "skip  chown checks (not root)"
  fi
  check "touch -d with nanoseconds" touch -d '2001-02-03 04:05:06.123456789' "$d/times"
  expect_eq "stat -c %y shows the nanoseconds" '2001-02-03 04:05:06.123456789 +0000' "$(stat -c %y "$d/times")"
  check "touch -a -d sets atime only" touch -a -d '1999-12-31 23:59:59.987654321' "$d/atime"
  expect_eq "stat -c %x after touch -a" '1999-12-31 23:59:59.987654321 +0000' "$(stat -c %x "$d/atime")"
  check "touch -d before 1970" touch -d '1960-06-15 12:00:00.5' "$d/old"
  expect_eq "stat -c %y of a time before 1970" '1960-06-15 12:00:00.500000000 +0000' "$(stat -c %y "$d/old")"
  check "touch -d after 2038" touch -d '2100-01-01 00:00:00.000000001' "$d/future"
  expect_eq "stat -c %y of a time after 2038" '2100-01-01 00:00:00.000000001 +0000' "$(stat -c %y "$d/future")"
  ln -s times "$d/times-link"
  check "touch -h -d of a symlink" touch -h -d '2002-03-04 05:06:07.000000008' "$d/times-link"
  expect_eq "stat -c %y of the symlink" '2002-03-04 05:06:07.000000008 +0000' "$(stat -c %y "$d/times-link")"
  check "touch -d of a directory" touch -d '2003-04-05 06:07:08.900000000' "$d/sticky"
  expect_eq "stat -c %y of the directory" '2003-04-05 06:07:08.900000000 +0000' "$(stat -c %y "$d/sticky")"
}

# sparse_facts DIR: what the sparse and >4 GiB files hold, read at a few places.
sparse_facts() {
  local s=$1/sparse/5g b=$1/big/over4g
  echo "5g size $(stat -c %s "$s")"
  echo "5g tail $(t tail -c 8 "$s" | od -An -tx1 | tr -d ' \n')"
  echo "5g middle $(t dd if="$s" bs=$MiB skip=2500 count=1 status=none | sha256sum | cut -c1-16)"
  echo "over4g size $(stat -c %s "$b")"
  echo "over4g at 4G+16K $(t dd if="$b" bs=16K skip=$((4 * GiB / 16384 + 1)) count=1 status=none | sha256sum | cut -c1-16)"
  echo "over4g across 4G $(t dd if="$b" bs=16K skip=$((4 * GiB - 8192)) iflag=skip_bytes count=1 status=none | sha256sum | cut -c1-16)"
  echo "over4g at 1G $(t dd if="$b" bs=16K skip=$((GiB / 16384)) count=1 status=none | sha256sum | cut -c1-16)"
}
zero16k=$(head -c 16384 /dev/zero | sha256sum | cut -c1-16)
zero1m=$(head -c $MiB /dev/zero | sha256sum | cut -c1-16)

# check_sparse DIR LABEL: sizes, contents and allocation of the sparse files.
check_sparse() {
  local d=$1 label=$2 facts
  facts=$(sparse_facts "$d")
  expect_eq "5 GiB sparse file: size$label" "5g size $((5 * GiB))" "$(grep '^5g size' <<<"$facts")"
  expect_eq "5 GiB sparse file: the bytes written at the end read back$label" "5g tail $(printf 'the end\n' | od -An -tx1 | tr -d ' \n')" \
    "$(grep '^5g tail' <<<"$facts")"
  expect_eq "5 GiB sparse file: the hole reads as zeros$label" "5g middle $zero1m" "$(grep '^5g middle' <<<"$facts")"
  expect_lt "5 GiB sparse file: du -k is small$label" "$(du -k "$d/sparse/5g" | cut -f1)" 1024
  expect_eq ">4 GiB file: size$label" "over4g size $((4 * GiB + 32768))" "$(grep '^over4g size' <<<"$facts")"
  expect_eq ">4 GiB file: 16 KiB written at 4 GiB + 16 KiB read back$label" "over4g at 4G+16K $PATTERN_SUM" \
    "$(grep '^over4g at 4G+16K' <<<"$facts")"
  expect_eq ">4 GiB file: 16 KiB written across the 4 GiB boundary read back$label" "over4g across 4G $PATTERN_SUM" \
    "$(grep '^over4g across 4G' <<<"$facts")"
  expect_eq ">4 GiB file: the hole at 1 GiB reads as zeros$label" "over4g at 1G $zero16k" "$(grep '^over4g at 1G' <<<"$facts")"
  expect_lt ">4 GiB file: du -k is small$label" "$(du -k "$d/big/over4g" | cut -f1)" 1024
}

shrink_grow() { truncate -s 50000 "$1" && truncate -s 100000 "$1"; }

wl_sparse() {
  local d=$1
  mkdir -p "$d/sparse" "$d/big"
  check "truncate -s 5G" truncate -s 5G "$d/sparse/5g"
  check "dd of 8 bytes at the end of the 5 GiB file" \
    dd if=<(printf 'the end\n') of="$d/sparse/5g" bs=8 seek=$((5 * GiB - 8)) oflag=seek_bytes conv=notrunc status=none
  check "dd of 16 KiB at offset 4 GiB + 16 KiB (seek beyond 4 GiB)" \
    dd if="$WORK/pattern" of="$d/big/over4g" bs=16K seek=$((4 * GiB / 16384 + 1)) conv=notrunc status=none
  check "dd of 16 KiB across the 4 GiB boundary" \
    dd if="$WORK/pattern" of="$d/big/over4g" bs=16K seek=$((4 * GiB - 8192)) oflag=seek_bytes conv=notrunc status=none
  check_sparse "$d" ""

}

wl_truncate() {
  local d=$1/truncate
  mkdir -p "$d"
  # A file cut down and grown again must read zeros where the old bytes were.
  head -c 100000 "$WORK/random" >"$d/shrink"
  check "truncate down then up" shrink_grow "$d/shrink"
  expect_eq "truncate down then up: the first 50000 bytes are kept" \
    "$(head -c 50000 "$WORK/random" | sha256sum)" "$(head -c 50000 "$d/shrink" | sha256sum)"
  expect_eq "truncate down then up: the regrown 50000 bytes read as zeros" \
    "$(head -c 50000 /dev/zero | sha256sum)" "$(tail -c 50000 "$d/shrink" | sha256sum)"
  # Rewritten through open(O_TRUNC) (the shell's >) with shorter content, as git
  # rewrites .git/COMMIT_EDITMSG.
  printf 'a longer first version\n' >"$d/rewritten"
  printf 'short\n' >"$d/rewritten"
  expect_eq "a file rewritten shorter with > (O_TRUNC) holds only the new bytes" "6 short" \
    "$(stat -c %s "$d/rewritten") $(cat "$d/rewritten")"
  head -c 300000 "$WORK/random" >"$d/rewritten-big"
  head -c 1000 /dev/zero >"$d/rewritten-big"
  expect_eq "a 300000-byte file rewritten as 1000 zeros with > (O_TRUNC)" "1000 $zero1000" \
    "$(stat -c %s "$d/rewritten-big") $(sha256sum <"$d/rewritten-big" | cut -c1-16)"
}
zero1000=$(head -c 1000 /dev/zero | sha256sum | cut -c1-16)

append_lines() { # append_lines FILE TAG: 200 lines, each by its own `>>`
  local i
  for ((i = 0; i < 200; i++)); do printf '%s %03d %s\n' "$2" "$i" "................................................" >>"$1"; done
}
o_append_after_seek() { # a write with O_APPEND after lseek(0) still goes to the end
  python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.lseek(fd, 0, os.SEEK_SET)
os.write(fd, b"appended after lseek(0)\n")
os.close(fd)' "$1"
}

wl_append() {
  local d=$1/append
  mkdir -p "$d"
  printf 'one\n' >"$d/log"
  printf 'two\n' >>"$d/log"
  printf 'three\n' >>"$d/log"
  expect_eq "echo >> appends (O_APPEND)" $'one\ntwo\nthree' "$(cat "$d/log")"
  check "O_APPEND write after lseek(0)" o_append_after_seek "$d/log"
  expect_eq "the O_APPEND write went to the end" 'appended after lseek(0)' "$(tail -n 1 "$d/log")"
  append_lines "$d/concurrent" A &
  local p1=$!
  append_lines "$d/concurrent" B &
  local p2=$!
  wait "$p1" "$p2"
  expect_eq "two concurrent >> writers: 400 whole lines, 200 from each" "400 200 200 400" \
    "$(wc -l <"$d/concurrent") $(grep -c '^A ' "$d/concurrent") $(grep -c '^B ' "$d/concurrent") $(grep -Ec '^[AB] [0-9]{3} \.{48}$' "$d/concurrent")"
}

# Through a descriptor whose file is unlinked: pread, pwrite, fstat, ftruncate, fsync.
orphan_io() {
  python3 -c '
import os, sys, hashlib
fd = 3
want = b"before unlink\nafter unlink\n"
got = os.pread(fd, 4096, 0)
assert got == want, "pread of the start: %r" % got
st = os.fstat(fd)
assert st.st_nlink == 0, "st_nlink %d" % st.st_nlink
data = open(sys.argv[1], "rb").read(3 << 20)
os.pwrite(fd, data, 1 << 20)
os.fsync(fd)
got = os.pread(fd, 3 << 20, 1 << 20)
assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), "3 MiB at 1 MiB differ"
os.ftruncate(fd, 100)
assert os.fstat(fd).st_size == 100, "size after ftruncate %d" % os.fstat(fd).st_size
assert os.pread(fd, 4096, 0) == want + bytes(100 - len(want)), "after ftruncate"
' "$WORK/random"
}

wl_unlinked_open() {
  local d=$1/orphan got
  mkdir -p "$d"
  exec 3<>"$d/file"
  printf 'before unlink\n' >&3
  check "rm of a file open on fd 3" rm "$d/file"
  check_fails "the removed file is gone from its directory" test -e "$d/file"
  printf 'after unlink\n' >&3
  check "read, write, fstat (nlink 0), fsync and ftruncate through fd 3 of the unlinked file" orphan_io
  exec 3>&-

  # The same through rename: the replaced file stays readable through an open fd.
  printf 'old content\n' >"$d/replaced"
  printf 'new content\n' >"$d/replacement"
  exec 4<"$d/replaced"
  check "mv over a file that is open" mv "$d/replacement" "$d/replaced"
  got=$(cat <&4)
  expect_eq "the open fd of a replaced file still reads the old content" 'old content' "$got"
  exec 4<&-
  expect_eq "the name reads the new content" 'new content' "$(cat "$d/replaced")"
}

wl_rename() {
  local d=$1/rename ino
  mkdir -p "$d"
  printf 'old\n' >"$d/a"
  printf 'new\n' >"$d/b"
  ino=$(stat -c %i "$d/b")
  check "mv of a file over another" mv "$d/b" "$d/a"
  expect_eq "after mv over: the name has the new content and inode, the old name is gone" \
    "new $ino no-b" "$(cat "$d/a") $(stat -c %i "$d/a") $([[ -e "$d/b" ]] && echo b-exists || echo no-b)"

  mkdir -p "$d/src/sub" "$d/dst"
  printf 'moved\n' >"$d/src/sub/f"
  check "mv -T of a directory over an empty directory" mv -T "$d/src" "$d/dst"
  expect_eq "after mv -T: the contents are under the new name, the old name is gone" \
    "moved no-src" "$(cat "$d/dst/sub/f" 2>&1) $([[ -e "$d/src" ]] && echo src-exists || echo no-src)"

  mkdir -p "$d/full1" "$d/full2"
  printf 'keep\n' >"$d/full2/keep"
  check_fails "mv -T of a directory over a non-empty directory fails" mv -T "$d/full1" "$d/full2"
  expect_eq "the failed mv -T changed nothing" "keep yes" "$(cat "$d/full2/keep") $([[ -d "$d/full1" ]] && echo yes)"
  check_fails "mv of a directory into itself fails" mv "$d/dst" "$d/dst/sub/inner"
  check_fails "mv -T of a file over a directory fails" mv -T "$d/a" "$d/full1"
  check "mv of a file to another directory" mv "$d/dst/sub/f" "$d/full1/f"
  expect_eq "the moved file reads back in its new directory" moved "$(cat "$d/full1/f")"
  check "mv of a directory to another parent" mv "$d/dst/sub" "$d/full2/sub"
  expect_eq "ls of the new parent" $'keep\nsub' "$(ls "$d/full2")"
}

# --- persistence -----------------------------------------------------------------
# record_state DIR PREFIX: what must survive a remount, as files PREFIX.*.
record_state() {
  local d=$1 p=$2
  tree_manifest "$d" >"$p.manifest"
  lib_find "$d" -- -printf '%p %i\n' | sort >"$p.inodes"
  lib_find "$d" -- -printf '%p %C@\n' | sort >"$p.ctimes"
  lib_find "$d" -- -type d -printf '%p %n\n' | sort >"$p.dirlinks"
  lib_find "$d" -- -print0 | sort -z | (cd "$d" && t xargs -0 getfattr -h -d -m '^user\.' -e hex --) >"$p.xattrs" 2>&1
  tree_sums "$d" sparse big >"$p.sums"
  sparse_facts "$d" >"$p.sparse"
  # immutable=1: no -journal, -wal or -shm files, so the directory's mtime stays put.
  (cd "$d/sqlite" && for db in journal.db wal.db; do
    echo "$db $(t sqlite3 "file:$db?immutable=1" .dump | sha256sum)"
  done) >"$p.sqlite" 2>&1
}

persist_checks() {
  local d=$1 before=$WORK/before after=$WORK/after
  record_state "$d" "$after"
  expect_same "after remount: sha256 of every file (except the sparse ones) is unchanged" "$before.sums" "$after.sums"
  expect_same "after remount: types, modes, owners, sizes, link counts, mtimes (ns), symlink targets unchanged" \
    "$before.manifest" "$after.manifest"
  expect_same "after remount: inode numbers (stat -c %i) of all $(wc -l <"$before.inodes") entries unchanged" \
    "$before.inodes" "$after.inodes"
  expect_same "after remount: ctimes unchanged" "$before.ctimes" "$after.ctimes"
  expect_same "after remount: directory link counts unchanged" "$before.dirlinks" "$after.dirlinks"
  expect_same "after remount: user.* xattrs (incl. binary, empty, 3000-byte, on a directory) unchanged" \
    "$before.xattrs" "$after.xattrs"
  expect_same "after remount: sqlite3 .dump of both databases unchanged" "$before.sqlite" "$after.sqlite"
  check_sparse "$d" " (after remount)"

  # Spot checks, so a failure above has a clear name here too.
  expect_eq "after remount: the hard links share an inode with nlink 3" "3 3 3 1" \
    "$(stat -c %h "$d/links/a" "$d/links/b" "$d/links/sub/c3" | xargs) $(stat -c %i "$d/links/a" "$d/links/b" "$d/links/sub/c3" | sort -u | wc -l)"
  printf 'third\n' >>"$d/links/sub/c3"
  expect_eq "after remount: a write through one hard link is read through another" \
    $'first\nsecond\nthird' "$(cat "$d/links/a")"
  expect_eq "after remount: symlinks read back" "target $LONG_TARGET /nonexistent/casfs/target" \
    "$(readlink "$d/links/sym") $(readlink "$d/links/longsym") $(readlink "$d/links/dangling")"
  expect_eq "after remount: the fifo is a fifo with mode 640" "fifo 640" "$(stat -c '%F %a' "$d/special/fifo")"
  check "after remount: a line through the fifo" fifo_roundtrip "$d/special/fifo"
  expect_eq "after remount: files rewritten shorter through O_TRUNC keep only the new bytes" \
    "6 short|1000 $zero1000" \
    "$(stat -c %s "$d/truncate/rewritten") $(cat "$d/truncate/rewritten")|$(stat -c %s "$d/truncate/rewritten-big") $(sha256sum <"$d/truncate/rewritten-big" | cut -c1-16)"
  expect_eq "after remount: getfattr of user.bin" 0x00ff0a0d7f8000 "$(xattr_hex "$d/xattr/file" user.bin)"
  expect_eq "after remount: modes" "741 4755 1777 0" \
    "$(stat -c %a "$d/meta/mode" "$d/meta/suid" "$d/meta/sticky" "$d/meta/none" | xargs)"
  if ((EUID == 0)); then
    expect_eq "after remount: owners" "1234:5678 4321:8765 2222" \
      "$(stat -c %u:%g "$d/meta/owned") $(stat -c %u:%g "$d/meta/owned-link") $(stat -c %g "$d/meta/owned-dir")"
  fi
  expect_eq "after remount: mtimes with nanoseconds" \
    "2001-02-03 04:05:06.123456789 +0000|1960-06-15 12:00:00.500000000 +0000|2100-01-01 00:00:00.000000001 +0000" \
    "$(stat -c %y "$d/meta/times" "$d/meta/old" "$d/meta/future" | paste -sd '|')"
  expect_eq "after remount: sqlite3 counts and integrity_check" "400 ok 500 ok" \
    "$(sqlite_q "$d/sqlite/journal.db" 'select count(*) from t') $(sqlite_q "$d/sqlite/journal.db" 'pragma integrity_check') $(sqlite_q "$d/sqlite/wal.db" 'select count(*) from t') $(sqlite_q "$d/sqlite/wal.db" 'pragma integrity_check')"
  check "after remount: git fsck --full of the repository" t git -C "$d/repo" fsck --full --no-progress
  check "after remount: git fsck --full of the clone" t git -C "$d/clone" fsck --full --no-progress
  check "after remount: git status in the clone is clean" git_clean "$d/clone"
  check "after remount: diff -r of the source and the cp -a copy" t diff -r --no-dereference "$SRC" "$d/cp"
}

# --- main ------------------------------------------------------------------------
head -c $((4 * MiB)) /dev/urandom >"$WORK/random"
head -c 16384 /dev/urandom >"$WORK/pattern"
PATTERN_SUM=$(sha256sum <"$WORK/pattern" | cut -c1-16)
tree_sums "$SRC" >"$WORK/src.sums"
tree_manifest "$SRC" >"$WORK/src.manifest"
lib_find "$SRC" -- -print | sort >"$WORK/src.list"
SRC_FILE_BYTES=$(tree_file_bytes "$SRC")
tar_copy "$SRC" "$WORK/tar-src" || bail "tar c | tar x of $SRC outside the mount"
tree_sums "$WORK/tar-src" >"$WORK/tar-src.sums"
tree_manifest "$WORK/tar-src" >"$WORK/tar-src.manifest"
rm -rf "$WORK/tar-src"
echo "source: $SRC, $(wc -l <"$WORK/src.list") entries, $SRC_FILE_BYTES bytes in files"

S=$WORK/store
M=$WORK/mnt
casfs_mkfs "$S" || bail "casfs mkfs"
casfs_mount "$S" "$M" || bail "casfs mount"
D=$M/t
mkdir "$D" || bail "mkdir in the mount"

section copy
wl_copy "$D"
section tar
wl_tar "$D"
section rsync
wl_rsync "$D"
section "find du"
wl_find_du "$D"
section git
wl_git "$D"
section sqlite
wl_sqlite "$D"
section links
wl_links "$D"
section fifo
wl_fifo "$D"
section xattr
wl_xattr "$D"
section meta
wl_meta "$D"
section sparse
wl_sparse "$D"
section truncate
wl_truncate "$D"
section append
wl_append "$D"
section "unlinked open"
wl_unlinked_open "$D"
section rename
wl_rename "$D"

section "record the state, remount"
record_state "$D" "$WORK/before"
casfs_remount "$S" "$M" || bail "remount"
section "after the remount"
persist_checks "$D"
casfs_unmount "$S" "$M" || bail "final unmount"
finish
