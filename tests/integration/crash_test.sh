#!/usr/bin/env bash
# Crash safety: a mixed workload runs on the mount (untar, new files fsync'd and
# recorded, random writes, renames, deletes) while the daemon is killed with
# SIGKILL at a random moment, over and over on the same store. After each kill the
# store must pass `casfs fsck` (objects leaked by the crash are allowed), mount
# again, and every file recorded as fsync'd must read back byte for byte. The
# background packer runs with low thresholds, and gc and repack are started on the
# way, so kills also land in the middle of them.
#
# CASFS_CRASH_ITERATIONS (default 20) sets the number of kills; the seed is printed
# and CASFS_TEST_SEED=N repeats a run's choices.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

iterations=${CASFS_CRASH_ITERATIONS:-$(scaled 20)}
seed=${CASFS_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "$LIB_NAME: seed=$seed iterations=$iterations (rerun with CASFS_TEST_SEED=$seed)"
RANDOM=$((seed % 32768))
ctl=${CASFS_CTL:-}
have_fsck=0
"$CASFS" --help 2>/dev/null | grep -qw fsck && have_fsck=1

store=$WORK/store mnt=$WORK/mnt manifest=$WORK/fsynced.txt
: >"$manifest"
tar -C /usr/include -cf "$WORK/tree.tar" linux asm-generic 2>/dev/null || bail "cannot make the tree tar"
casfs_mkfs "$store" || bail "mkfs failed"
mount_options=logfile=$WORK/daemon.log
if [[ -n "$ctl" ]]; then
  # Low thresholds keep the background packer busy, so kills land inside packing.
  mount_options+=,pack_loose_objects=100,pack_age=1
fi

# The workload: runs until the mount goes away under it. Files it fsyncs (and whose
# directory it fsyncs) are appended to the manifest with their SHA-256, and never
# touched again.
workload() { # workload ITERATION
  python3 - "$mnt" "$manifest" "$WORK/tree.tar" "$seed" "$1" <<'PY'
import hashlib, os, random, subprocess, sys
mnt, manifest, tree_tar, seed, it = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed * 1000 + it)
base = os.path.join(mnt, f"i{it:03d}")
# The mount can vanish under us at any moment; never write to the directory
# beneath it, whose files the test would take for the filesystem's.
dev = os.stat(mnt).st_dev
if dev == os.stat(os.path.dirname(mnt)).st_dev:
    sys.exit("the mount is not there")
os.makedirs(base, exist_ok=True)
open(manifest + ".started", "w").close()
pool = rng.randbytes(4 << 20)
scratch = []
n = 0
def data():
    size = rng.choice([0, 1, 100, 4096, 70_000, 300_000, 1_500_000])
    if rng.random() < 0.5:  # repeated content, so dedup is exercised too
        start = rng.randrange(0, len(pool) - size) if size < len(pool) else 0
        return pool[start:start + size]
    return rng.randbytes(size)
try:
    with open(manifest, "a") as log:
        while True:
            n += 1
            op = rng.random()
            if op < 0.35:
                path = os.path.join(base, f"durable{n:05d}")
                body = data()
                fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
                os.write(fd, body)
                os.fsync(fd)
                os.close(fd)
                dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(dfd)
                os.close(dfd)
                if os.stat(path).st_dev != dev:
                    break
                log.write(f"{hashlib.sha256(body).hexdigest()} {path}\n")
                log.flush()
            elif op < 0.45:
                d = os.path.join(base, f"untar{n:05d}")
                os.mkdir(d)
                subprocess.run(["tar", "-C", d, "-xf", tree_tar], check=True,
                               stderr=subprocess.DEVNULL)
            elif op < 0.75 or not scratch:
                path = os.path.join(base, f"scratch{n:05d}")
                with open(path, "ab") as f:
                    f.seek(rng.randrange(0, 2 << 20))
                    f.write(data())
                scratch.append(path)
            elif op < 0.85:
                src = rng.choice(scratch)
                dst = os.path.join(base, f"renamed{n:05d}")
                os.rename(src, dst)
                scratch[scratch.index(src)] = dst
            else:
                victim = scratch.pop(rng.randrange(len(scratch)))
                os.unlink(victim)
                for entry in os.listdir(base):
                    if entry.startswith("untar") and rng.random() < 0.3:
                        subprocess.run(["rm", "-rf", os.path.join(base, entry)], check=False)
except OSError:
    pass  # the daemon was killed under us
except subprocess.CalledProcessError:
    pass
PY
}

# Checks every recorded file; prints the bad ones.
verify_manifest() {
  python3 - "$manifest" <<'PY'
import hashlib, sys
bad = 0
for line in open(sys.argv[1]):
    digest, path = line.rstrip("\n").split(" ", 1)
    try:
        got = hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError as e:
        got = f"unreadable ({e})"
    if got != digest:
        bad += 1
        if bad <= 10:
            print(f"{path}: want {digest}, got {got}")
sys.exit(1 if bad else 0)
PY
}

kill_daemon() {
  local pid
  for pid in $(lib_daemon_pids "$store"); do kill -KILL "$pid" 2>/dev/null; done
  for _ in $(seq 100); do lib_lock_free "$store" && break; sleep 0.1; done
  fusermount3 -uz "$mnt" 2>/dev/null
  lib_unregister "$mnt"
}

for ((i = 1; i <= iterations; i++)); do
  casfs_mount "$store" "$mnt" -o "$mount_options" || bail "mount before kill $i failed"
  rm -f "$manifest.started"
  workload "$i" &
  wpid=$!
  # The kill is timed from when the workload has started on the mount.
  for _ in $(seq 200); do [[ -e "$manifest.started" ]] && break; sleep 0.05; done
  if [[ -n "$ctl" ]] && ((RANDOM % 3 == 0)); then
    # A maintenance job in flight when the kill comes.
    (sleep 0.$((RANDOM % 10)); "$ctl" "$( ((RANDOM % 2)) && echo gc || echo repack)" "$mnt" >/dev/null 2>&1) &
  fi
  sleep "$((RANDOM % 3)).$((RANDOM % 10))"
  kill_daemon
  timeout 30 tail --pid="$wpid" -f /dev/null || kill -KILL "$wpid" 2>/dev/null
  wait "$wpid" 2>/dev/null
  if ((have_fsck)); then
    t "$CASFS" fsck "$store" >"$WORK/fsck.log" 2>&1
    rc=$?
    if ((rc != 0)); then
      fail "kill $i: casfs fsck is clean (exit $rc)" "$(tail -n 15 "$WORK/fsck.log")"
    fi
  fi
  casfs_mount "$store" "$mnt" -o logfile="$WORK/daemon.log" || bail "mount after kill $i failed"
  check "kill $i: every fsync'd file ($(wc -l <"$manifest") so far) reads back byte for byte" \
    verify_manifest
  casfs_unmount "$store" "$mnt"
done
if ((have_fsck)); then
  check "after all kills and a clean unmount: casfs fsck" t "$CASFS" fsck "$store"
fi
finish
