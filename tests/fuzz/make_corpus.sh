#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz/corpus/ from a small real store: pack
# records and whole packs, LMDB values of every decoded table (read with mdb_dump,
# from the Debian package lmdb-utils), casfs.json, and control requests. The output is
# checked in; run this again only when a format changes. Files named regression-*
# (inputs that once crashed a parser, added by hand) are kept.
#
#   tests/fuzz/make_corpus.sh /path/to/casfs
set -euo pipefail
casfs=$(realpath "${1:?usage: $0 /path/to/casfs}")
out=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/corpus
work=$(mktemp -d "${CASFS_TEST_DIR:-/var/tmp}/casfs-corpus.XXXXXX")
trap 'mountpoint -q "$work/mnt" && fusermount3 -u "$work/mnt"; rm -rf "$work"' EXIT

store=$work/store mnt=$work/mnt
"$casfs" mkfs "$store" >/dev/null
mkdir -p "$mnt"
"$casfs" mount "$store" "$mnt" >/dev/null 2>&1 </dev/null
printf 'hello\n' >"$mnt/small"
head -c 300000 /dev/urandom >"$mnt/random"
seq 8000 | sed 's/^/casfs compresses this line /' >"$mnt/text"
head -c 3000000 /dev/urandom >"$mnt/many-chunks" # dozens of new chunks: an intake pack
mkdir "$mnt/dir" && ln -s ../small "$mnt/dir/link"
setfacl -m u:65534:r "$mnt/small" 2>/dev/null || true
fusermount3 -u "$mnt"
timeout 60 flock "$store/run/lock" true
mkdir "$work/intake" && cp "$store"/packs/*.pack "$work/intake/" # before pack removes them
"$casfs" store pack "$store" >/dev/null

# Inputs that once crashed a parser (regression-*) stay.
mkdir -p "$out"/{pack_record,index_value,store_config,control_request}
find "$out" -type f ! -name 'regression-*' -delete

python3 - "$store" "$out" "$work/intake" <<'PY'
import glob, os, subprocess, sys
store, out, intake = sys.argv[1], sys.argv[2], sys.argv[3]

def put(target, name, data):
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)

# Pack records, each alone, and the start of a pack with its file header.
for path in sorted(glob.glob(os.path.join(store, "packs", "*.pack"))):
    data = open(path, "rb").read()
    put("pack_record", "pack-head", data[:16 + 72 + 64])
    # Up to four whole small records and four headers of large ones.
    at, whole, headers = 16, 0, 0
    while at + 72 <= len(data) and (whole < 4 or headers < 4):
        stored = int.from_bytes(data[at + 48:at + 56], "little")
        record = data[at:at + 72 + stored]
        if len(record) <= 4096 and whole < 4:
            put("pack_record", f"record-{whole}", record)
            whole += 1
        elif len(record) > 4096 and headers < 4:
            put("pack_record", f"record-{headers}-header", record[:72])
            headers += 1
        at += 72 + stored

# Records of an intake pack (flag bit 0 set), the first two.
for path in sorted(glob.glob(os.path.join(intake, "*.pack")))[:1]:
    data = open(path, "rb").read()
    assert data[16 + 5] == 1, "expected an intake pack's record"
    at = 16
    for n in range(2):
        stored = int.from_bytes(data[at + 48:at + 56], "little")
        put("pack_record", f"intake-record-{n}-header", data[at:at + 72])
        at += 72 + stored

# LMDB values: mdb_dump prints, per table, a header then key and value lines in hex.
def table(name):
    text = subprocess.run(["mdb_dump", "-s", name, os.path.join(store, "meta")],
                          check=True, capture_output=True, text=True).stdout
    lines = text.split("HEADER=END\n", 1)[1].split("DATA=END")[0].split()
    return [(bytes.fromhex(lines[i]), bytes.fromhex(lines[i + 1]))
            for i in range(0, len(lines) - 1, 2)]

# The first byte picks the decoder (tests/fuzz/index_value_fuzz.cc).
# Objects of both layouts: the fixed part alone (1) and with block sums (2).
objects = table("objects")
for i, (k, v) in enumerate([o for o in objects if o[1][0] == 1][:2] +
                           [o for o in objects if o[1][0] == 2][:2]):
    put("index_value", f"objects-{i}", b"\x00" + k + v)
for i, (k, v) in enumerate(table("packs")[:2]):
    put("index_value", f"packs-{i}", b"\x01" + k + v)
    # The same entry marked as an intake pack (byte 1), as an insert writes them.
    put("index_value", f"packs-{i}-intake", b"\x01" + k + v[:1] + b"\x01" + v[2:])
for i, (k, v) in enumerate(table("inodes")[:4]):
    put("index_value", f"inodes-{i}", b"\x02" + v)
for i, (k, v) in enumerate(table("extents")[:4]):
    # The fuzzer decodes extents of inode 1: give the key that inode.
    put("index_value", f"extents-{i}", b"\x03" + (1).to_bytes(8, "big") + k[8:] + v)
for i, (k, v) in enumerate(t for t in table("xattrs") if b"posix_acl" in t[0]):
    put("index_value", f"acl-{i}", b"\x04" + v)

put("store_config", "casfs.json", open(os.path.join(store, "casfs.json"), "rb").read())
PY

# Wrong but well-formed configurations reach the later checks.
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["version"] += 1; print(json.dumps(c, indent=2))' \
  "$store/casfs.json" >"$out/store_config/newer-version"
sed 's/"min": [0-9]*/"min": 0/' "$store/casfs.json" >"$out/store_config/chunk-min-zero"
printf '{"format":"casfs-store"}' >"$out/store_config/missing-keys"

n=0
for line in '{"cmd":"status"}' '{"cmd":"flush"}' '{"cmd":"jobs"}' '{"cmd":"job","id":1,"wait":true}' \
  '{"cmd":"pack","wait":false}' '{"cmd":"repack","wait":true,"threshold":25}' \
  '{"cmd":"verify"}' '{"cmd":7}' '[1,2,3]' 'not json' '{"cmd":"\u00ff\ud800"}'; do
  printf '%s' "$line" >"$out/control_request/request-$n"
  n=$((n + 1))
done
find "$out" -type f | wc -l
