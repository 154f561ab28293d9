#!/usr/bin/env bash
# The filesystem benchmark: casfs against ext4 on the same disk, in the same run, on the
# Linux source tree (Debian's linux-source-6.1). See tests/bench/README.md, "Filesystem
# benchmark", for what each workload does and why.
#
#   tests/bench/fs_bench.sh [--quick] [--only 1,2,6] [--casfs BIN] [--casfsctl BIN]
#                           [--floor BIN] [--dir DIR] [--json FILE] [--uring]
#
# Runs as root: it installs what is missing with apt-get, drops the page cache and mounts.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
usage: fs_bench.sh [--quick] [--only LIST] [--casfs BIN] [--casfsctl BIN] [--floor BIN] [--dir DIR]
                   [--json FILE] [--uring]

  --quick          small data (the tree's kernel/ and fs/, 10k files, 128 MiB fio file):
                   a few minutes, to iterate on
  --only LIST      comma-separated workload numbers, e.g. 1,2,6 (default: 1-11)
  --casfs BIN      the casfs binary (default: build it, Release, in build-fsbench/)
  --casfsctl BIN   the casfsctl binary (default: next to --casfs)
  --floor BIN      the FUSE floor, casfs_fuse_floor (default: in the build tree of --casfs,
                   tests/bench/): a daemon that does no work, timed in workloads 1, 3 and 7
                   to show what FUSE itself costs
  --dir DIR        where the casfs stores and the ext4 copies go; must be on the disk
                   under test, not tmpfs (default /var/tmp/fsbench)
  --json FILE      results as JSON (default DIR/results/fs_bench[-quick].json)
  --uring          mount with -o uring (FUSE over io_uring); turns the kernel's
                   /sys/module/fuse/parameters/enable_uring on for the run

Environment: FSBENCH_SRC is the tmpfs directory that keeps the decompressed tar across
runs (default /dev/shm/fsbench).
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
report_py=$repo/tests/bench/fs_bench_report.py

quick=0
only=""
casfs=""
casfsctl=""
floor=""
dir=/var/tmp/fsbench
json=""
uring=0
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --only) only=${2:?--only needs a list}; shift ;;
    --casfs) casfs=${2:?--casfs needs a path}; shift ;;
    --casfsctl) casfsctl=${2:?--casfsctl needs a path}; shift ;;
    --floor) floor=${2:?--floor needs a path}; shift ;;
    --dir) dir=${2:?--dir needs a path}; shift ;;
    --json) json=${2:?--json needs a path}; shift ;;
    --uring) uring=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "fs_bench: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

die() { echo "fs_bench: FAILED: $*" >&2; exit 1; }
log() { echo "fs_bench: $*" >&2; }

[[ $(id -u) == 0 ]] || die "must run as root (apt-get, drop_caches, mounts)"

uring_param=/sys/module/fuse/parameters/enable_uring
uring_before=""
mount_extra=""
if ((uring)); then
  [[ -e $uring_param ]] || die "--uring: $uring_param does not exist (needs Linux 6.14 or later)"
  uring_before=$(cat "$uring_param")
  echo Y >"$uring_param" || die "--uring: cannot turn on $uring_param"
  mount_extra=uring
fi

declare -A selected=()
if [[ -z $only ]]; then
  for n in {1..11}; do selected[$n]=1; done
else
  IFS=, read -ra parts <<<"$only"
  for n in "${parts[@]}"; do
    [[ $n =~ ^([1-9]|1[01])$ ]] || die "--only: '$n' is not a workload number (1-11)"
    selected[$n]=1
  done
fi
want() { [[ -n ${selected[$1]:-} ]]; }

# --- Sizes ------------------------------------------------------------------------------
if ((quick)); then
  fio_size=$((128 << 20)); fio_ios=2000; fio_runtime_cap=60
  empty_dirs=100; empty_per_dir=100
  sqlite_inserts=200
  packer_threshold=200
else
  fio_size=$((1 << 30)); fio_ios=20000; fio_runtime_cap=300
  empty_dirs=100; empty_per_dir=1000
  sqlite_inserts=2000
  packer_threshold=2000
fi
fio_iodepth=16

# --- Tools ------------------------------------------------------------------------------
need_pkgs=()
need() {  # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2")
}
need fusermount3 fuse3
need python3 python3
need xz xz-utils
need findmnt util-linux
want 7 && need fio fio
want 9 && need sqlite3 sqlite3
if want 11; then need borg borgbackup; need restic restic; fi
tarxz=/usr/src/linux-source-6.1.tar.xz
src=${FSBENCH_SRC:-/dev/shm/fsbench}
full_tar=$src/linux-source-6.1.tar
if [[ ! -s $full_tar && ! -f $tarxz ]]; then need_pkgs+=(linux-source-6.1); fi
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${need_pkgs[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${need_pkgs[@]}" >&2; }
fi

# --- casfs ------------------------------------------------------------------------------
if [[ -z $casfs ]]; then
  build=$repo/build-fsbench
  if [[ ! -f $build/CMakeCache.txt ]]; then
    # Warnings do not fail a benchmark build (GCC 12 at -O3 warns where -O2 does not).
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCASFS_WERROR=OFF >&2
  fi
  cmake --build "$build" -j"$(nproc)" --target casfs casfsctl casfs_fuse_floor >&2
  casfs=$build/tools/casfs
fi
[[ -z $casfsctl ]] && casfsctl=$(dirname "$casfs")/casfsctl
[[ -z $floor ]] && floor=$(dirname "$casfs")/../tests/bench/casfs_fuse_floor
casfs=$(realpath "$casfs"); casfsctl=$(realpath "$casfsctl"); floor=$(realpath -m "$floor")
[[ -x $casfs ]] || die "no casfs binary at $casfs"
[[ -x $casfsctl ]] || die "no casfsctl binary at $casfsctl"
if want 1 || want 3 || want 7; then
  [[ -x $floor ]] || die "no FUSE floor at $floor: build the casfs_fuse_floor target or pass --floor"
fi

# --- Directories ------------------------------------------------------------------------
mkdir -p "$dir"
dir=$(realpath "$dir")
fstype=$(findmnt -n -o FSTYPE --target "$dir" | tail -n1)
[[ $fstype == tmpfs || $fstype == ramfs ]] && die "$dir is on $fstype; --dir must be on a disk"
mkdir -p "$src"
src_fstype=$(findmnt -n -o FSTYPE --target "$src" | tail -n1)
[[ $src_fstype == tmpfs ]] || die "$src is on $src_fstype, not tmpfs (set FSBENCH_SRC)"
# Nothing may still be mounted below DIR (a previous run that was killed): say so, touch nothing.
if findmnt -rn -o TARGET | grep -q "^$dir/"; then
  die "something is still mounted under $dir: $(findmnt -rn -o TARGET | grep "^$dir/" | tr '\n' ' ')— unmount it (fusermount3 -u) first"
fi
E=$dir/ext4          # the ext4 side
C=$dir/casfs         # the casfs stores and mountpoints
results=$dir/results
logs=$dir/logs
rm -rf "$E" "$C" "$dir/borg" "$dir/restic" "$logs" "$dir/rss"
mkdir -p "$E" "$C" "$results" "$logs" "$dir/rss"
name=fs_bench
((quick)) && name=fs_bench-quick
[[ -z $json ]] && json=$results/$name.json
figs=$results/$name.figs
: >"$figs"

fig() { printf '%s\t%s\n' "$1" "$2" >>"$figs"; }   # fig KEY VALUE

# --- Cleanup: unmount what this run mounted, stop its watchers, drop per-run tmpfs data ----
declare -A mounted=()     # mountpoint -> daemon pid
declare -A watcher=()     # daemon pid -> watcher pid
cleanup() {
  local rc=$? m
  trap - EXIT INT TERM
  for m in "${!mounted[@]}"; do
    log "cleanup: unmounting $m"
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
  done
  for m in "${watcher[@]}"; do kill "$m" 2>/dev/null || true; done
  rm -rf "$src/tree" "$src/random.dat"
  [[ -n $uring_before ]] && echo "$uring_before" >"$uring_param"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Helpers ----------------------------------------------------------------------------
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "nan"; else printf "%.3f", a / b }'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
count_entries() { find "$1" -mindepth 1 | wc -l; }
jget() { python3 "$report_py" get "$1" "$2"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Records the daemon's VmHWM (KiB; it only grows) and its CPU time (user + system, in
# clock ticks) every 0.2 s until it exits: OUT holds "VMHWM TICKS".
rss_watch() {
  local pid=$1 out=$2 k v rest hwm="" st
  while [[ -e /proc/$pid/status ]]; do
    hwm=""
    while read -r k v rest; do
      if [[ $k == VmHWM: ]]; then hwm=$v; break; fi
    done </proc/"$pid"/status 2>/dev/null || true
    # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) is "(casfs)".
    read -r -a st </proc/"$pid"/stat 2>/dev/null || st=()
    if [[ -n $hwm && ${#st[@]} -gt 14 ]]; then
      printf '%s %s\n' "$hwm" $((st[13] + st[14])) >"$out"
    fi
    sleep 0.2
  done
}

wl_pids=()   # daemons started during the current workload
all_pids=()

# casfs_mount STORE MNT OPTS: mounts, finds the daemon's pid (the store's lock file names
# it), starts its RSS watcher.
casfs_mount() {
  local store=$1 mnt=$2 opts=$3 pid
  mkdir -p "$mnt"
  "$casfs" mount "$store" "$mnt" -o "logfile=$logs/daemon-$(basename "$(dirname "$store")").log,$opts${mount_extra:+,$mount_extra}"
  pid=$(head -n1 "$store/run/lock")
  [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -q "mount" ||
    die "cannot find the casfs daemon of $store (lock says '$pid')"
  mounted[$mnt]=$pid
  rss_watch "$pid" "$dir/rss/$pid" &
  watcher[$pid]=$!
  wl_pids+=("$pid"); all_pids+=("$pid")
}

# casfs_umount MNT: unmounts and waits until the daemon has written everything and exited.
casfs_umount() {
  local mnt=$1 pid=${mounted[$1]} i
  fusermount3 -u "$mnt"
  for ((i = 0; i < 6000; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && die "the casfs daemon $pid did not exit within 10 minutes of unmounting"
  wait "${watcher[$pid]}" 2>/dev/null || true
  unset "watcher[$pid]" "mounted[$mnt]"
}

# casfs_cold MNT STORE OPTS: unmount (when mounted), mount, drop caches: the daemon starts
# cold too, and the pages it read while mounting are dropped.
casfs_cold() {
  [[ -n ${mounted[$1]:-} ]] && casfs_umount "$1"
  casfs_mount "$2" "$1" "$3"
  drop_caches
}

# floor_mount MNT / floor_umount MNT: the FUSE floor (tests/bench/fuse_floor.cc), mounted as
# casfs is (-o uring with --uring); it keeps its tree in memory, so an unmount forgets it.
floor_mount() {
  local mnt=$1 i
  mkdir -p "$mnt"
  "$floor" "$mnt" ${mount_extra:+-o "$mount_extra"} 2>>"$logs/floor.log" &
  mounted[$mnt]=$!
  for ((i = 0; i < 100; i++)); do
    [[ $(findmnt -n -o FSTYPE --target "$mnt" | tail -n1) == fuse ]] && return
    kill -0 "${mounted[$mnt]}" 2>/dev/null || die "the FUSE floor did not start (see $logs/floor.log)"
    sleep 0.1
  done
  die "the FUSE floor did not mount $mnt within 10 s (see $logs/floor.log)"
}
floor_umount() {
  fusermount3 -u "$1"
  wait "${mounted[$1]}" || die "the FUSE floor ended with an error (see $logs/floor.log)"
  unset "mounted[$1]"
}
FL=$dir/floor   # the floor's mountpoint

casfs_status() { "$casfsctl" status "$1" --json; }
store_status() { "$casfs" store status "$1" --json; }
# tiers_of MNT PREFIX: where the mount's objects are (figures PREFIX.objects_loose,
# .objects_intake, .objects_packed), for the report to say what a read read from.
tiers_of() {
  local f=$results/$2-tiers.json t
  casfs_status "$1" >"$f"
  for t in loose intake packed; do fig "$2.objects_$t" "$(jget "$f" "objects.$t")"; done
}

wl_begin() {
  wl=$1; wl_pids=(); wl_t0=$EPOCHREALTIME
  fig "w$wl.load_start" "$(loadavg)"
  log "workload $1: $2"
}
wl_end() {
  local p peak=0 v t ticks=0
  for p in "${wl_pids[@]}"; do
    read -r v t <"$dir/rss/$p" 2>/dev/null || { v=0; t=0; }
    ((v > peak)) && peak=$v
    ticks=$((ticks + t))
  done
  # A workload that found everything ready may have started no daemon: no figures then.
  if ((${#wl_pids[@]})); then
    fig "w$wl.rss_kib" "$peak"
    # CPU time of the daemons this workload started (setup steps included).
    fig "w$wl.daemon_cpu_s" "$(div "$ticks" "$(getconf CLK_TCK)")"
  fi
  fig "w$wl.load_end" "$(loadavg)"
  fig "w$wl.wall_s" "$(secs "$wl_t0" "$EPOCHREALTIME")"
  printf '[%s] %s (daemon peak RSS %s, load %s)\n' "$wl" "$1" \
    "$( ((${#wl_pids[@]})) && echo "$((peak / 1024)) MiB" || echo "-: no mount")" "$(loadavg)"
}
ratio_text() { printf 'ext4 %.2f s, casfs %.2f s, casfs/ext4 %.2f' "$1" "$2" "$(div "$2" "$1")"; }

# --- Data: the tar, decompressed once to tmpfs ------------------------------------------
top=linux-source-6.1
if [[ ! -s $full_tar ]]; then
  log "decompressing $tarxz to $full_tar (once; kept for later runs)"
  xz -T0 -dc "$tarxz" >"$full_tar.tmp"
  mv "$full_tar.tmp" "$full_tar"
fi
if ((quick)); then
  tree_tar=$src/linux-quick.tar
  if [[ ! -s $tree_tar ]]; then
    log "making $tree_tar from the tree's kernel/ and fs/ (once)"
    rm -rf "$src/quick.tmp"; mkdir -p "$src/quick.tmp"
    tar -xf "$full_tar" -C "$src/quick.tmp" "$top/kernel" "$top/fs"
    tar -cf "$tree_tar.tmp" -C "$src/quick.tmp" "$top"
    rm -rf "$src/quick.tmp"
    mv "$tree_tar.tmp" "$tree_tar"
  fi
  big_src=$tree_tar
else
  tree_tar=$full_tar
  big_src=$full_tar
fi
if [[ ! -s $tree_tar.stats || $tree_tar.stats -ot $tree_tar ]]; then
  python3 "$report_py" tarstats "$tree_tar" >"$tree_tar.stats"
fi
read -r tree_entries tree_files tree_bytes <"$tree_tar.stats"
big_bytes=$(stat -c %s "$big_src")

fig meta.repo "$repo"
fig meta.dir "$dir"
fig meta.src "$src"
fig meta.quick "$quick"
fig meta.only "${only:-1-11}"
fig meta.casfs "$casfs"
fig meta.mount_options "${mount_extra:-}"
fig meta.casfs_version "$("$casfs" --version 2>&1 | head -n1)"
fig meta.tree_tar "$tree_tar"
fig meta.tree_entries "$tree_entries"
fig meta.tree_files "$tree_files"
fig meta.tree_bytes "$tree_bytes"
fig meta.load_start "$(loadavg)"
fig meta.fuse "$(fusermount3 --version 2>&1 | head -n1)"
fig meta.io_engine "${CASFS_IO:-default}"
fig meta.tar "$(tar --version | head -n1)"
log "tree: $tree_tar ($tree_entries entries, $tree_files files, $tree_bytes bytes); results: $json"

# --- Shared state between workloads -----------------------------------------------------
TS=$C/tree/store; TM=$C/tree/mnt     # the tree's casfs store: workloads 1, 2, 5, 6, 10, 11
tree_state=""                        # "", unpacked (intake packs and loose files), packed
ext4_tree=0
tree_sum=""                          # sha256 of the tree's tar stream (sorted by name)

untar_casfs() {  # untar_casfs MNT DEST: tar -x into DEST inside MNT, sync, flush; sets u_tar u_sync u_total
  local mnt=$1 dest=$2 t0
  mkdir -p "$dest"
  t0=$EPOCHREALTIME
  tar -xf "$tree_tar" -C "$dest"
  u_tar=$(secs "$t0" "$EPOCHREALTIME")
  sync
  u_sync=$(secs "$t0" "$EPOCHREALTIME")
  "$casfsctl" flush "$mnt" >/dev/null
  u_total=$(secs "$t0" "$EPOCHREALTIME")
}
untar_ext4() {  # untar_ext4 DEST: sets u_tar u_total
  local dest=$1 t0
  rm -rf "$dest"; mkdir -p "$dest"
  t0=$EPOCHREALTIME
  tar -xf "$tree_tar" -C "$dest"
  u_tar=$(secs "$t0" "$EPOCHREALTIME")
  sync
  u_total=$(secs "$t0" "$EPOCHREALTIME")
}
check_count() {  # check_count DIR EXPECTED WHAT
  local n
  n=$(count_entries "$1")
  [[ $n == "$2" ]] || die "$3: $n entries under $1, expected $2"
}
# The tree's fingerprint: the directories' names, modes and owners, then the tar stream of
# everything else (names, contents, sizes, mtimes, modes, owners, symlink targets) sorted by
# name. Directory mtimes are left out: tar leaves some directories of this tree with the
# time of extraction, on ext4 as on casfs.
tar_sum() {
  (cd "$1/$top" && {
    find . -type d -printf '%p %m %u %g\n' | sort
    find . ! -type d -print0 | sort -z | tar --null --no-recursion -T - -cf -
  } | sha256sum | cut -d' ' -f1)
}

ensure_ext4_tree() {
  ((ext4_tree)) && return
  log "setup: untar the tree into ext4 (not timed)"
  untar_ext4 "$E/tree"
  check_count "$E/tree" "$tree_entries" "ext4 tree"
  ext4_tree=1
}
ensure_tree_sum() {
  [[ -n $tree_sum ]] && return
  ensure_ext4_tree
  tree_sum=$(tar_sum "$E/tree")
}
ensure_casfs_tree() {
  [[ -n $tree_state ]] && return
  log "setup: untar the tree into casfs (not timed)"
  rm -rf "$C/tree"; mkdir -p "$C/tree"
  "$casfs" mkfs "$TS" >/dev/null
  casfs_mount "$TS" "$TM" nopacker
  untar_casfs "$TM" "$TM"
  check_count "$TM" "$tree_entries" "casfs tree"
  casfs_umount "$TM"
  tree_state=unpacked
}
ensure_casfs_tree_packed() {
  ensure_casfs_tree
  [[ $tree_state == packed ]] && return
  log "setup: pack the tree's store (not timed)"
  casfs_mount "$TS" "$TM" nopacker
  "$casfsctl" pack --wait "$TM" >/dev/null
  casfs_umount "$TM"
  tree_state=packed
}

# --- 1. untar the tree, then sync ---------------------------------------------------------
# casfs: -o nopacker (the foreground path alone; 10b measures it with the packer). The
# casfs time includes `casfsctl flush`, which writes out and commits what sync leaves in the
# daemon, so that both sides end with the tree durable.
w1() {
  wl_begin 1 "untar the tree, then sync"
  drop_caches
  untar_ext4 "$E/tree"
  fig w1.ext4_tar_s "$u_tar"; fig w1.ext4_s "$u_total"
  local e=$u_total
  rm -rf "$C/tree"; mkdir -p "$C/tree"
  "$casfs" mkfs "$TS" >/dev/null
  casfs_mount "$TS" "$TM" nopacker
  drop_caches
  untar_casfs "$TM" "$TM"
  fig w1.casfs_tar_s "$u_tar"; fig w1.casfs_sync_s "$u_sync"; fig w1.casfs_s "$u_total"
  w1_casfs=$u_total
  fig w1.files "$tree_files"; fig w1.tree_bytes "$tree_bytes"
  check_count "$E/tree" "$tree_entries" "ext4 tree"
  check_count "$TM" "$tree_entries" "casfs tree"
  casfs_status "$TM" >"$results/w1-status.json"
  casfs_umount "$TM"
  ext4_tree=1; tree_state=unpacked
  local c=$u_total c_tar=$u_tar
  floor_mount "$FL"
  drop_caches
  untar_ext4 "$FL/tree"
  fig w1.floor_s "$u_total"
  check_count "$FL/tree" "$tree_entries" "FUSE floor tree"
  floor_umount "$FL"
  wl_end "untar + sync: $(ratio_text "$e" "$c") (tar alone: casfs ${c_tar} s); FUSE floor $u_total s"
}

# --- 2. read the tree back, cold ----------------------------------------------------------
w2() {
  wl_begin 2 "read the tree back after a remount, caches dropped"
  ensure_ext4_tree; ensure_casfs_tree
  local t0 e c s
  drop_caches
  t0=$EPOCHREALTIME
  (cd "$E/tree/$top" && tar cf - . | cat >/dev/null)
  e=$(secs "$t0" "$EPOCHREALTIME")
  casfs_cold "$TM" "$TS" nopacker
  t0=$EPOCHREALTIME
  (cd "$TM/$top" && tar cf - . | cat >/dev/null)
  c=$(secs "$t0" "$EPOCHREALTIME")
  fig w2.ext4_s "$e"; fig w2.casfs_s "$c"; fig w2.tree_bytes "$tree_bytes"
  tiers_of "$TM" w2
  # Check once: both trees have the same fingerprint (tar_sum).
  ensure_tree_sum
  s=$(tar_sum "$TM")
  [[ $s == "$tree_sum" ]] || die "the casfs tree's tar stream differs from ext4's ($s vs $tree_sum)"
  fig w2.tar_sha256 "$s"
  casfs_umount "$TM"
  wl_end "cold tree read: $(ratio_text "$e" "$c"); tree fingerprint (tar_sum) matches"
}

# --- 6. find + stat of every entry, cold ------------------------------------------------
# find -printf '%s %T@' stats each entry (find needs the size and mtime of every one).
w6() {
  wl_begin 6 "find -printf '%s %T@' over the tree, cold"
  ensure_ext4_tree; ensure_casfs_tree
  local t0 e c ne nc
  drop_caches
  t0=$EPOCHREALTIME
  ne=$(find "$E/tree/$top" -printf '%s %T@\n' | wc -l)
  e=$(secs "$t0" "$EPOCHREALTIME")
  casfs_cold "$TM" "$TS" nopacker
  t0=$EPOCHREALTIME
  nc=$(find "$TM/$top" -printf '%s %T@\n' | wc -l)
  c=$(secs "$t0" "$EPOCHREALTIME")
  [[ $ne == "$nc" && $nc == "$tree_entries" ]] || die "find saw $nc entries in casfs, $ne in ext4, expected $tree_entries"
  # Sizes and mtimes of regular files agree (warm, not timed).
  local se sc
  se=$(cd "$E/tree" && find . -type f -printf '%p %s %T@\n' | sort | sha256sum)
  sc=$(cd "$TM" && find . -type f -printf '%p %s %T@\n' | sort | sha256sum)
  [[ $se == "$sc" ]] || die "sizes or mtimes differ between the casfs and ext4 trees"
  casfs_umount "$TM"
  fig w6.ext4_s "$e"; fig w6.casfs_s "$c"; fig w6.entries "$nc"
  wl_end "find + stat: $(ratio_text "$e" "$c")"
}

# --- 10. packing; reading from packs; untar with the packer running ----------------------
w10() {
  wl_begin 10 "casfsctl pack --wait; cold read from packs; untar with the packer running"
  ensure_casfs_tree
  [[ $tree_state == unpacked ]] || die "workload 10 needs the tree's objects unpacked"
  local t0 p lb lo c
  casfs_mount "$TS" "$TM" nopacker
  casfs_status "$TM" >"$results/w10-before.json"
  # Not packed yet: objects in intake packs (a write-out's batch of new chunks, raw)
  # and loose files.
  lb=$(($(jget "$results/w10-before.json" bytes.loose) + $(jget "$results/w10-before.json" bytes.intake)))
  lo=$(($(jget "$results/w10-before.json" objects.loose) + $(jget "$results/w10-before.json" objects.intake)))
  drop_caches
  t0=$EPOCHREALTIME
  "$casfsctl" pack --wait "$TM" >"$logs/w10-pack.out"
  p=$(secs "$t0" "$EPOCHREALTIME")
  casfs_status "$TM" >"$results/w10-after.json"
  [[ $(jget "$results/w10-after.json" objects.loose) == 0 ]] || die "objects still loose after pack --wait"
  [[ $(jget "$results/w10-after.json" objects.intake) == 0 ]] || die "intake objects left after pack --wait"
  fig w10.pack_s "$p"; fig w10.unpacked_bytes "$lb"; fig w10.unpacked_objects "$lo"
  fig w10.loose_objects "$(jget "$results/w10-before.json" objects.loose)"
  fig w10.intake_objects "$(jget "$results/w10-before.json" objects.intake)"
  fig w10.pack_mb_s "$(div "$(div "$lb" 1000000)" "$p")"
  fig w10.stored_after "$(jget "$results/w10-after.json" bytes.stored)"
  fig w10.packs "$(jget "$results/w10-after.json" packs)"
  tree_state=packed
  # 10c: the cold tree read again, now from packs.
  casfs_cold "$TM" "$TS" nopacker
  t0=$EPOCHREALTIME
  (cd "$TM/$top" && tar cf - . | cat >/dev/null)
  c=$(secs "$t0" "$EPOCHREALTIME")
  fig w10.packed_read_s "$c"
  ensure_tree_sum
  [[ $(tar_sum "$TM") == "$tree_sum" ]] || die "the tree read from packs differs from ext4's"
  casfs_umount "$TM"
  echo "[10a] pack: $p s for $lo objects, $(div "$(div "$lb" 1000000)" "$p") MB/s raw; [10c] cold tree read from packs: $c s"
  # 10b: workload 1 again, into a fresh store, with the packer's object threshold low.
  local PS=$C/packer/store PM=$C/packer/mnt
  rm -rf "$C/packer"; mkdir -p "$C/packer"
  "$casfs" mkfs "$PS" >/dev/null
  casfs_mount "$PS" "$PM" "pack_loose_objects=$packer_threshold"
  drop_caches
  untar_casfs "$PM" "$PM"
  casfs_status "$PM" >"$results/w10-packer.json"
  fig w10.packer_threshold "$packer_threshold"
  fig w10.packer_untar_s "$u_total"; fig w10.packer_tar_s "$u_tar"
  fig w10.packer_runs "$(jget "$results/w10-packer.json" packer.runs)"
  fig w10.packer_objects_packed "$(jget "$results/w10-packer.json" packer.objects_packed)"
  check_count "$PM" "$tree_entries" "casfs tree (packer running)"
  casfs_umount "$PM"
  rm -rf "$C/packer"
  wl_end "untar with the packer running: $u_total s (workload 1 without the packer: ${w1_casfs:-not run} s)"
}

# --- 11. borg and restic on the same tree -----------------------------------------------
# Source: a copy of the tree on tmpfs, so that the tools' own work is timed, not the disk.
w11() {
  wl_begin 11 "borg create (zstd,3) and restic backup of the tree; casfs stored bytes after packing"
  ensure_casfs_tree_packed
  store_status "$TS" >"$results/w11-casfs.json"
  fig w11.casfs_stored "$(jget "$results/w11-casfs.json" bytes.stored)"
  fig w11.casfs_raw "$(jget "$results/w11-casfs.json" bytes.raw)"
  fig w11.casfs_du "$(du -sb "$TS" | cut -f1)"
  fig w11.casfs_meta_du "$(du -sb "$TS/meta" | cut -f1)"
  fig w11.tree_bytes "$tree_bytes"
  rm -rf "$src/tree"; mkdir -p "$src/tree"
  tar -xf "$tree_tar" -C "$src/tree"
  local t0 b r
  export BORG_BASE_DIR=$dir/borg/home BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
  export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_PASSPHRASE=""
  mkdir -p "$BORG_BASE_DIR"
  borg init --encryption=none "$dir/borg/repo"
  drop_caches
  t0=$EPOCHREALTIME
  (cd "$src/tree" && borg create --compression zstd,3 "$dir/borg/repo::tree" "$top")
  b=$(secs "$t0" "$EPOCHREALTIME")
  sync
  fig w11.borg_s "$b"
  fig w11.borg_repo_bytes "$(du -sb "$dir/borg/repo" | cut -f1)"
  fig w11.borg_version "$(borg --version)"
  export RESTIC_PASSWORD=fsbench RESTIC_CACHE_DIR=$dir/restic/cache
  restic init --repo "$dir/restic/repo" >/dev/null
  drop_caches
  t0=$EPOCHREALTIME
  (cd "$src/tree" && restic backup --quiet --repo "$dir/restic/repo" "$top")
  r=$(secs "$t0" "$EPOCHREALTIME")
  sync
  fig w11.restic_s "$r"
  fig w11.restic_repo_bytes "$(du -sb "$dir/restic/repo" | cut -f1)"
  fig w11.restic_version "$(restic version | head -n1)"
  restic cat config --repo "$dir/restic/repo" >"$results/w11-restic-config.json"
  fig w11.restic_repo_version "$(jget "$results/w11-restic-config.json" version)"
  rm -rf "$src/tree" "$dir/borg/home" "$RESTIC_CACHE_DIR"
  wl_end "borg $b s, restic $r s; casfs stored $(jget "$results/w11-casfs.json" bytes.stored) B vs borg repo $(du -sb "$dir/borg/repo" | cut -f1) B"
}

# --- 5. a second copy of the tree -------------------------------------------------------
# Into the tree's store (packed by 10/11 when they ran, loose otherwise), -o nopacker.
w5() {
  wl_begin 5 "untar a second copy: time, and stored-bytes growth"
  ensure_ext4_tree; ensure_casfs_tree
  local e s0 s1 d0 d1
  drop_caches
  untar_ext4 "$E/copy2"
  e=$u_total
  d0=$(du -sb "$TS" | cut -f1)
  s0=$(jget <(store_status "$TS") bytes.stored)
  casfs_mount "$TS" "$TM" nopacker
  rm -rf "$TM/copy2"
  drop_caches
  untar_casfs "$TM" "$TM/copy2"
  check_count "$TM/copy2" "$tree_entries" "casfs second copy"
  casfs_umount "$TM"
  s1=$(jget <(store_status "$TS") bytes.stored)
  d1=$(du -sb "$TS" | cut -f1)
  rm -rf "$E/copy2"
  fig w5.ext4_s "$e"; fig w5.casfs_s "$u_total"
  fig w5.tree_state "$tree_state"
  fig w5.stored_before "$s0"; fig w5.stored_after "$s1"
  fig w5.stored_growth_bytes $((s1 - s0))
  fig w5.stored_growth_pct "$(awk -v a=$((s1 - s0)) -v b="$tree_bytes" 'BEGIN { printf "%.4f", 100 * a / b }')"
  fig w5.du_growth_bytes $((d1 - d0))
  fig w5.du_growth_pct "$(awk -v a=$((d1 - d0)) -v b="$tree_bytes" 'BEGIN { printf "%.4f", 100 * a / b }')"
  wl_end "second copy: $(ratio_text "$e" "$u_total"); stored bytes +$((s1 - s0)) B, store on disk +$((d1 - d0)) B"
}

# --- 3, 4. the big file -----------------------------------------------------------------
BS=$C/big/store; BM=$C/big/mnt
big_ready=0
w3() {
  wl_begin 3 "copy the big file in, then sync"
  local t0 e c cp sy fl
  rm -f "$E/big.tar"
  drop_caches
  t0=$EPOCHREALTIME
  cp "$big_src" "$E/big.tar"
  sync
  e=$(secs "$t0" "$EPOCHREALTIME")
  rm -rf "$C/big"; mkdir -p "$C/big"
  "$casfs" mkfs "$BS" >/dev/null
  casfs_mount "$BS" "$BM" nopacker
  drop_caches
  t0=$EPOCHREALTIME
  cp "$big_src" "$BM/big.tar"
  cp=$(secs "$t0" "$EPOCHREALTIME")
  sync
  sy=$(secs "$t0" "$EPOCHREALTIME")
  "$casfsctl" flush "$BM" >/dev/null
  c=$(secs "$t0" "$EPOCHREALTIME")
  casfs_umount "$BM"
  big_ready=1
  floor_mount "$FL"
  drop_caches
  t0=$EPOCHREALTIME
  cp "$big_src" "$FL/big.tar"
  sync
  fl=$(secs "$t0" "$EPOCHREALTIME")
  fig w3.floor_s "$fl"
  floor_umount "$FL"
  fig w3.ext4_s "$e"; fig w3.casfs_s "$c"; fig w3.casfs_cp_s "$cp"; fig w3.casfs_sync_s "$sy"
  fig w3.bytes "$big_bytes"
  wl_end "big file write: $(ratio_text "$e" "$c"); FUSE floor $fl s"
}
w4() {
  wl_begin 4 "read the big file back, cold"
  local t0 e c
  if ((!big_ready)); then
    log "setup: copy the big file in (not timed)"
    cp "$big_src" "$E/big.tar"
    rm -rf "$C/big"; mkdir -p "$C/big"
    "$casfs" mkfs "$BS" >/dev/null
    casfs_mount "$BS" "$BM" nopacker
    cp "$big_src" "$BM/big.tar"
    casfs_umount "$BM"
  fi
  drop_caches
  t0=$EPOCHREALTIME
  cat "$E/big.tar" >/dev/null
  e=$(secs "$t0" "$EPOCHREALTIME")
  casfs_cold "$BM" "$BS" nopacker
  t0=$EPOCHREALTIME
  cat "$BM/big.tar" >/dev/null
  c=$(secs "$t0" "$EPOCHREALTIME")
  cmp "$BM/big.tar" "$big_src" || die "the big file read back from casfs differs"
  casfs_umount "$BM"
  rm -rf "$C/big" "$E/big.tar"
  fig w4.ext4_s "$e"; fig w4.casfs_s "$c"; fig w4.bytes "$big_bytes"
  wl_end "big file cold read: $(ratio_text "$e" "$c"); cmp matches"
}

# --- 7. random 4 KiB reads, cold --------------------------------------------------------
# The file: random bytes generated on tmpfs, copied to both sides and synced. fio reads a
# fixed number of random 4 KiB blocks (same offsets on both sides: randrepeat), buffered
# (direct=0); each run starts after caches are dropped (and casfs remounted).
FS=$C/fio/store; FM=$C/fio/mnt
fio_run() {  # fio_run FILE ENGINE IODEPTH OUT.json
  fio --name=randread --filename="$1" --size="$fio_size" --rw=randread --bs=4k \
    --ioengine="$2" --iodepth="$3" --direct=0 --number_ios="$fio_ios" \
    --runtime="$fio_runtime_cap" --randrepeat=1 --output-format=json --output="$4" >/dev/null
  [[ $(jget "$4" jobs.0.error) == 0 ]] || die "fio reported an error (see $4)"
}
w7() {
  wl_begin 7 "random 4 KiB reads in a $((fio_size >> 20)) MiB file, cold (fio io_uring, psync)"
  local eng qd out
  rm -f "$src/random.dat"
  head -c "$fio_size" /dev/urandom >"$src/random.dat"
  cp "$src/random.dat" "$E/random.dat"
  rm -rf "$C/fio"; mkdir -p "$C/fio"
  "$casfs" mkfs "$FS" >/dev/null
  casfs_mount "$FS" "$FM" nopacker
  cp "$src/random.dat" "$FM/random.dat"
  sync
  "$casfsctl" flush "$FM" >/dev/null
  tiers_of "$FM" w7
  for eng in io_uring psync; do
    qd=1; [[ $eng == io_uring ]] && qd=$fio_iodepth
    drop_caches
    out=$results/w7-$eng-ext4.json
    fio_run "$E/random.dat" "$eng" "$qd" "$out"
    fig "w7.$eng.ext4_iops" "$(jget "$out" jobs.0.read.iops)"
    fig "w7.$eng.ext4_lat_us" "$(div "$(jget "$out" jobs.0.read.lat_ns.mean)" 1000)"
    casfs_cold "$FM" "$FS" nopacker
    out=$results/w7-$eng-casfs.json
    fio_run "$FM/random.dat" "$eng" "$qd" "$out"
    fig "w7.$eng.casfs_iops" "$(jget "$out" jobs.0.read.iops)"
    fig "w7.$eng.casfs_lat_us" "$(div "$(jget "$out" jobs.0.read.lat_ns.mean)" 1000)"
    fig "w7.$eng.iodepth" "$qd"
    echo "[7] $eng: ext4 $(jget "$results/w7-$eng-ext4.json" jobs.0.read.iops) IOPS, casfs $(jget "$out" jobs.0.read.iops) IOPS"
    # The floor's file has no data: its READs answer zeros from memory.
    floor_mount "$FL"
    truncate -s "$fio_size" "$FL/random.dat"
    drop_caches
    out=$results/w7-$eng-floor.json
    fio_run "$FL/random.dat" "$eng" "$qd" "$out"
    fig "w7.$eng.floor_iops" "$(jget "$out" jobs.0.read.iops)"
    floor_umount "$FL"
  done
  cmp "$FM/random.dat" "$src/random.dat" || die "the fio file read back from casfs differs"
  # 7p: the same file after packing (random data is stored raw in the pack).
  "$casfsctl" pack --wait "$FM" >/dev/null
  casfs_cold "$FM" "$FS" nopacker
  out=$results/w7-packed-casfs.json
  fio_run "$FM/random.dat" io_uring "$fio_iodepth" "$out"
  fig w7.packed.casfs_iops "$(jget "$out" jobs.0.read.iops)"
  fig w7.packed.casfs_lat_us "$(div "$(jget "$out" jobs.0.read.lat_ns.mean)" 1000)"
  cmp "$FM/random.dat" "$src/random.dat" || die "the fio file read back from packs differs"
  casfs_umount "$FM"
  rm -rf "$C/fio" "$E/random.dat" "$src/random.dat"
  fig w7.ios "$fio_ios"; fig w7.file_bytes "$fio_size"; fig w7.fio_version "$(fio --version)"
  wl_end "random reads: io_uring casfs/ext4 $(div "$(jget "$results/w7-io_uring-casfs.json" jobs.0.read.iops)" "$(jget "$results/w7-io_uring-ext4.json" jobs.0.read.iops)"), psync $(div "$(jget "$results/w7-psync-casfs.json" jobs.0.read.iops)" "$(jget "$results/w7-psync-ext4.json" jobs.0.read.iops)"), packed io_uring $(jget "$out" jobs.0.read.iops) IOPS"
}

# --- 8. empty files -----------------------------------------------------------------------
# 100 directories of 1,000 empty files (100 of 100 with --quick), one touch per directory.
make_empty() {  # make_empty BASE
  local base=$1 i
  local -a names=()
  for ((i = 0; i < empty_per_dir; i++)); do names+=("f$i"); done
  for ((i = 0; i < empty_dirs; i++)); do
    mkdir "$base/d$i"
    touch "${names[@]/#/$base/d$i/}"
  done
}
w8() {
  wl_begin 8 "create $((empty_dirs * empty_per_dir)) empty files, then sync"
  local t0 e c n
  rm -rf "$E/empty"; mkdir -p "$E/empty"
  drop_caches
  t0=$EPOCHREALTIME
  make_empty "$E/empty"
  sync
  e=$(secs "$t0" "$EPOCHREALTIME")
  local S=$C/empty/store M=$C/empty/mnt
  rm -rf "$C/empty"; mkdir -p "$C/empty"
  "$casfs" mkfs "$S" >/dev/null
  casfs_mount "$S" "$M" nopacker
  mkdir "$M/empty"
  drop_caches
  t0=$EPOCHREALTIME
  make_empty "$M/empty"
  sync
  "$casfsctl" flush "$M" >/dev/null
  c=$(secs "$t0" "$EPOCHREALTIME")
  n=$((empty_dirs * (empty_per_dir + 1)))
  check_count "$E/empty" "$n" "ext4 empty files"
  check_count "$M/empty" "$n" "casfs empty files"
  casfs_umount "$M"
  rm -rf "$C/empty" "$E/empty"
  fig w8.ext4_s "$e"; fig w8.casfs_s "$c"
  fig w8.files $((empty_dirs * empty_per_dir)); fig w8.dirs "$empty_dirs"; fig w8.per_dir "$empty_per_dir"
  wl_end "empty files: $(ratio_text "$e" "$c")"
}

# --- 9. sqlite3 ---------------------------------------------------------------------------
# One INSERT per transaction (autocommit), default journal mode (delete) and synchronous
# (full): each insert writes and fsyncs the journal and the database and deletes the journal.
w9() {
  wl_begin 9 "sqlite3, $sqlite_inserts inserts, one transaction each"
  local sql=$results/w9.sql t0 e c i
  {
    echo "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);"
    for ((i = 0; i < sqlite_inserts; i++)); do
      echo "INSERT INTO t(k, v) VALUES('key$i', randomblob(200));"
    done
  } >"$sql"
  rm -rf "$E/sqlite"; mkdir -p "$E/sqlite"
  drop_caches
  t0=$EPOCHREALTIME
  sqlite3 "$E/sqlite/test.db" <"$sql"
  e=$(secs "$t0" "$EPOCHREALTIME")
  local S=$C/sqlite/store M=$C/sqlite/mnt
  rm -rf "$C/sqlite"; mkdir -p "$C/sqlite"
  "$casfs" mkfs "$S" >/dev/null
  casfs_mount "$S" "$M" nopacker
  drop_caches
  t0=$EPOCHREALTIME
  sqlite3 "$M/test.db" <"$sql"
  c=$(secs "$t0" "$EPOCHREALTIME")
  [[ $(sqlite3 "$M/test.db" 'SELECT count(*) FROM t') == "$sqlite_inserts" ]] || die "casfs: wrong row count"
  [[ $(sqlite3 "$M/test.db" 'PRAGMA integrity_check') == ok ]] || die "casfs: sqlite integrity_check failed"
  [[ $(sqlite3 "$E/sqlite/test.db" 'SELECT count(*) FROM t') == "$sqlite_inserts" ]] || die "ext4: wrong row count"
  casfs_umount "$M"
  rm -rf "$C/sqlite" "$E/sqlite"
  fig w9.ext4_s "$e"; fig w9.casfs_s "$c"; fig w9.inserts "$sqlite_inserts"
  fig w9.sqlite_version "$(sqlite3 --version | cut -d' ' -f1)"
  wl_end "sqlite3: $(ratio_text "$e" "$c")"
}

# --- Run ----------------------------------------------------------------------------------
# The tree's store is reused: 1 untars it, 2 and 6 read it unpacked, 10 packs it, 11 compares
# its packed size, 5 adds a second copy. Then the workloads with their own stores.
for n in 1 2 6 10 11 5 3 4 7 8 9; do
  want "$n" && "w$n"
done

fig meta.load_end "$(loadavg)"
peak=0
for p in "${all_pids[@]}"; do
  read -r v t <"$dir/rss/$p" 2>/dev/null || v=0
  ((v > peak)) && peak=$v
done
fig meta.rss_peak_kib "$peak"
echo
python3 "$report_py" report --figs "$figs" --json "$json" --md "${json%.json}.md"
echo
echo "JSON: $json"
# Free the disk (slow with many files on a discard mount: each unlink waits for its discard).
log "removing the stores and the ext4 copies under $dir"
rm -rf "$C" "$E" "$dir/borg" "$dir/restic"
