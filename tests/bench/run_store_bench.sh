#!/usr/bin/env bash
# Builds casfs_store_bench if needed, prepares the Linux source tree, runs the object
# store benchmark and writes its log and JSON results.
#
#   tests/bench/run_store_bench.sh            full run (about 6 minutes on 2 cores)
#   tests/bench/run_store_bench.sh --quick    small run, well under a minute: checks it works
#
# Environment:
#   BENCH_DIR     working directory on the disk under test (default /var/tmp/casfs-bench)
#   BENCH_SRC     where the Linux tree is unpacked once (default /var/tmp/casfs-bench-src)
#   BENCH_OUT     where the log and JSON go (default build-bench/bench-results)
#   BENCH_BUILD   build directory (default build-bench)
#   TREE_THREADS  threads calling insert_files for the tree (default 2)
# Extra arguments go to the program (e.g. --seed 7, --rounds 3); see --help.
# Needs root: it installs linux-source-6.1 with apt-get and drops the page cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)

quick=0
for arg in "$@"; do
  [[ $arg == --quick ]] && quick=1
done

build=${BENCH_BUILD:-$repo/build-bench}
dir=${BENCH_DIR:-/var/tmp/casfs-bench}
src=${BENCH_SRC:-/var/tmp/casfs-bench-src}
out=${BENCH_OUT:-$build/bench-results}
threads=${TREE_THREADS:-2}
tarball=/usr/src/linux-source-6.1.tar.xz
tree=$src/linux-source-6.1
marker=$src/.linux-source-6.1.unpacked  # outside the tree: not one of its files

# 1. Build (incremental; a no-op when up to date).
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build" --target casfs_store_bench -j"$(nproc)"
bench=$build/tests/bench/casfs_store_bench

# 2. The Linux source tree: installed from Debian once, unpacked once, then reused.
tree_args=()
if [[ ! -f $marker ]]; then
  if [[ ! -f $tarball ]]; then
    if [[ $quick == 1 ]]; then
      echo "run_store_bench: $tarball missing; --quick uses /usr/include instead" >&2
    else
      echo "run_store_bench: installing linux-source-6.1" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y linux-source-6.1 || { apt-get update && apt-get install -y linux-source-6.1; }
    fi
  fi
  if [[ -f $tarball ]]; then
    echo "run_store_bench: unpacking $tarball into $src (once)" >&2
    rm -rf "$tree" "$marker"
    mkdir -p "$src"
    tar -xJf "$tarball" -C "$src"
    touch "$marker"
  fi
fi
if [[ -f $marker ]]; then
  if [[ $quick == 1 ]]; then
    tree_args=(--tree "$tree/kernel")
  else
    tree_args=(--tree "$tree")
  fi
elif [[ $quick == 1 ]]; then
  tree_args=(--tree /usr/include --tree-max-files 500)
fi

# 3. Run. The disk under test must be a real one, not tmpfs.
mkdir -p "$dir" "$out"
fstype=$(findmnt -n -o FSTYPE --target "$dir" 2>/dev/null || stat -f -c %T "$dir")
if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
  echo "run_store_bench: $dir is on $fstype; give BENCH_DIR on a real disk" >&2
  exit 2
fi
name=store_bench
[[ $quick == 1 ]] && name=store_bench-quick
{
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -r), $(nproc) cpus," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $dir on $fstype" \
    "($(findmnt -n -o SOURCE,OPTIONS --target "$dir" 2>/dev/null || true))"
  echo "# $bench --dir $dir ${tree_args[*]} --tree-threads $threads --json $out/$name.json $*"
} | tee "$out/$name.log"
set +e
"$bench" --dir "$dir" "${tree_args[@]}" --tree-threads "$threads" --json "$out/$name.json" "$@" \
  2>&1 | tee -a "$out/$name.log"
status=${PIPESTATUS[0]}
set -e
echo "run_store_bench: log $out/$name.log, results $out/$name.json" >&2
exit "$status"
