#!/usr/bin/env python3
"""Helpers for fs_bench.sh: tar statistics, JSON lookups, and the final table and JSON.

  fs_bench_report.py tarstats TAR             -> "ENTRIES FILES FILE_BYTES"
  fs_bench_report.py get FILE KEY.PATH        -> the value at KEY.PATH of a JSON file
  fs_bench_report.py report --figs F --json OUT [--md OUT.md]
                                              -> Markdown table on stdout, JSON file

The figures file has one "key<TAB>value" line per figure, written by fs_bench.sh as
each measurement finishes; keys look like "w1.ext4_s" or "meta.kernel".
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tarfile

MB = 1e6
MIB = 1 << 20


def tarstats(path):
    entries = files = nbytes = 0
    with tarfile.open(path) as t:
        for m in t:
            entries += 1
            if m.isreg():
                files += 1
                nbytes += m.size
    print(entries, files, nbytes)


def get(path, key):
    with open(path) as f:
        v = json.load(f)
    for part in key.split("."):
        v = v[int(part)] if isinstance(v, list) else v[part]
    print(json.dumps(v) if isinstance(v, (dict, list)) else v)


def parse_value(s):
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def load_figs(path):
    figs = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            key, _, value = line.partition("\t")
            figs[key] = parse_value(value)
    return figs


def nested(figs):
    out = {}
    for key, value in figs.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def sh(*cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        # findmnt lists a filesystem mounted twice on one place twice; the last one is visible.
        return out.splitlines()[-1] if cmd[0] == "findmnt" and out else out
    except (OSError, subprocess.CalledProcessError):
        return None


def machine(figs):
    m = {"nproc": os.cpu_count(), "kernel": platform.release()}
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                m["ram_bytes"] = int(line.split()[1]) * 1024
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                m["cpu"] = line.split(":", 1)[1].strip()
                break
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    m["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    d = figs.get("meta.dir")
    if d:
        src = sh("findmnt", "-n", "-o", "SOURCE", "--target", d)
        m["disk"] = {
            "dir": d,
            "device": src,
            "fstype": sh("findmnt", "-n", "-o", "FSTYPE", "--target", d),
            "mount_options": sh("findmnt", "-n", "-o", "OPTIONS", "--target", d),
        }
        if src and src.startswith("/dev/"):
            info = sh("lsblk", "-d", "-n", "-o", "MODEL,SIZE,ROTA,TRAN", src)
            m["disk"]["lsblk_model_size_rota_tran"] = info
            dev = os.path.basename(os.path.realpath(src))
            for attr in ("queue/scheduler", "queue/nr_requests", "queue/rotational"):
                try:
                    with open(f"/sys/class/block/{dev}/{attr}") as f:
                        m["disk"][attr.replace("/", "_")] = f.read().strip()
                except OSError:
                    pass
    s = figs.get("meta.src")
    if s:
        m["source_tmpfs"] = {
            "dir": s,
            "fstype": sh("findmnt", "-n", "-o", "FSTYPE", "--target", s),
            "mount_options": sh("findmnt", "-n", "-o", "OPTIONS", "--target", s),
        }
    with open("/proc/loadavg") as f:
        m["loadavg_at_report"] = f.read().split()[:3]
    return m


def fmt_s(v):
    return "—" if v is None else f"{v:.2f} s"


def fmt_mb(v):
    return "—" if v is None else f"{v / MB:.1f} MB"


def fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}×"


def build_rows(f):
    """Rows: dict(id, workload, ext4, floor, casfs, ratio, target, met, details).

    floor is the FUSE floor's figure (fuse_floor.cc: a daemon that does no work) where
    the workload ran on it too; details then give casfs against it."""
    rows = []

    def g(key):
        return f.get(key)

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def tiers(w):
        # Where the objects were when workload w read them (runs before intake packs
        # recorded nothing: everything was loose then).
        counts = [(g(f"{w}.objects_{t}"), name) for t, name in
                  (("intake", "in intake packs"), ("loose", "loose"), ("packed", "packed"))]
        if all(n is None for n, _ in counts):
            return "loose objects"
        return "objects " + ", ".join(f"{n:.0f} {name}" for n, name in counts if n)

    def time_row(wid, label, w, target=None, details=""):
        e, c, fl = g(f"{w}.ext4_s"), g(f"{w}.casfs_s"), g(f"{w}.floor_s")
        if e is None and c is None:
            return
        r = ratio(c, e)
        met = None if target is None or r is None else r <= target
        if fl is not None:
            details = (f"FUSE floor/ext4 {fmt_ratio(ratio(fl, e))}, casfs/floor "
                       f"{fmt_ratio(ratio(c, fl))}; {details}")
        rows.append(dict(id=wid, workload=label, ext4=fmt_s(e), floor=fmt_s(fl), casfs=fmt_s(c), ratio=r,
                         ratio_text=fmt_ratio(r),
                         target=None if target is None else f"≤ {target:g}×",
                         met=met, details=details))

    # 1 untar
    if g("w1.casfs_s") is not None:
        d = (f"{g('w1.files')} files, {g('w1.tree_bytes') / MB:.0f} MB; casfs: tar "
             f"{g('w1.casfs_tar_s'):.2f} s, +sync {g('w1.casfs_sync_s') - g('w1.casfs_tar_s'):.2f} s, "
             f"+flush {g('w1.casfs_s') - g('w1.casfs_sync_s'):.2f} s; ext4: tar "
             f"{g('w1.ext4_tar_s'):.2f} s + sync {g('w1.ext4_s') - g('w1.ext4_tar_s'):.2f} s")
        time_row("1", "untar the tree, then sync", "w1", 2.0, d)
    # 2 cold read
    if g("w2.casfs_s") is not None:
        d = f"{g('w2.tree_bytes') / MB / g('w2.casfs_s'):.0f} MB/s vs {g('w2.tree_bytes') / MB / g('w2.ext4_s'):.0f} MB/s; {tiers('w2')}; tree fingerprint (tar_sum) matches"
        time_row("2", "read the tree back, cold (tar cf - . \\| cat)", "w2", 2.0, d)
    # 3, 4 big file
    if g("w3.casfs_s") is not None:
        d = (f"{g('w3.bytes') / MB:.0f} MB; casfs: cp {g('w3.casfs_cp_s'):.2f} s, +sync "
             f"{g('w3.casfs_sync_s') - g('w3.casfs_cp_s'):.2f} s, +flush {g('w3.casfs_s') - g('w3.casfs_sync_s'):.2f} s")
        time_row("3", "copy the big tar file in, then sync", "w3", 1.5, d)
    if g("w4.casfs_s") is not None:
        d = f"{g('w4.bytes') / MB / g('w4.casfs_s'):.0f} MB/s vs {g('w4.bytes') / MB / g('w4.ext4_s'):.0f} MB/s; cmp matches"
        time_row("4", "read the big file back, cold (cat)", "w4", 1.5, d)
    # 5 second copy
    if g("w5.casfs_s") is not None:
        time_row("5a", "untar a second copy, then sync", "w5", None,
                 "into the same store (objects already stored)")
        pct = g("w5.stored_growth_pct")
        rows.append(dict(
            id="5b", workload="second copy: stored-bytes growth / tree size", ext4="—",
            casfs=f"{g('w5.stored_growth_bytes') / MB:.2f} MB", ratio=pct,
            ratio_text=f"{pct:.2f} %", target="≤ 1 %", met=pct <= 1.0,
            details=(f"objects' stored bytes; the store's disk usage (du, incl. LMDB meta) grew "
                     f"{g('w5.du_growth_bytes') / MB:.1f} MB = {g('w5.du_growth_pct'):.2f} %")))
    # 6 find + stat
    if g("w6.casfs_s") is not None:
        time_row("6", "find -printf '%s %T@' (stat of every entry), cold", "w6", 3.0,
                 f"{g('w6.entries')} entries")
    # 7 random reads
    for eng, qd in (("io_uring", "iodepth"), ("psync", None)):
        e, c, fl = g(f"w7.{eng}.ext4_iops"), g(f"w7.{eng}.casfs_iops"), g(f"w7.{eng}.floor_iops")
        if e is None:
            continue
        r = ratio(c, e)
        det = "" if fl is None else (f"FUSE floor/ext4 {fmt_ratio(ratio(fl, e))}, casfs/floor "
                                     f"{fmt_ratio(ratio(c, fl))}; ")
        det += (f"{g('w7.ios')} random 4 KiB reads of a {g('w7.file_bytes') / MIB:.0f} MiB file, "
               f"direct=0, iodepth {g(f'w7.{eng}.iodepth')}; mean latency ext4 "
               f"{g(f'w7.{eng}.ext4_lat_us'):.0f} µs, casfs {g(f'w7.{eng}.casfs_lat_us'):.0f} µs; {tiers('w7')}")
        rows.append(dict(id="7", workload=f"random 4 KiB reads, cold, fio {eng} (IOPS)",
                         ext4=f"{e:.0f}", floor="—" if fl is None else f"{fl:.0f}", casfs=f"{c:.0f}",
                         ratio=r, ratio_text=fmt_ratio(r),
                         target="≥ 0.5×", met=None if r is None else r >= 0.5, details=det))
    c = g("w7.packed.casfs_iops")
    if c is not None:
        e = g("w7.io_uring.ext4_iops")
        r = ratio(c, e)
        rows.append(dict(id="7p", workload="random 4 KiB reads, cold, fio io_uring, after packing",
                         ext4=f"{e:.0f}", casfs=f"{c:.0f}", ratio=r, ratio_text=fmt_ratio(r),
                         target="", met=None,
                         details=f"same file after casfsctl pack; mean latency {g('w7.packed.casfs_lat_us'):.0f} µs"))
    # 8 empty files
    if g("w8.casfs_s") is not None:
        time_row("8", f"create {g('w8.files')} empty files, then sync", "w8", None,
                 f"{g('w8.dirs')} directories × {g('w8.per_dir')} files; "
                 f"{g('w8.files') / g('w8.casfs_s'):.0f} vs {g('w8.files') / g('w8.ext4_s'):.0f} files/s")
    # 9 sqlite
    if g("w9.casfs_s") is not None:
        time_row("9", f"sqlite3: {g('w9.inserts')} inserts, one transaction each", "w9", None,
                 f"journal_mode=delete, synchronous=full (defaults); "
                 f"{g('w9.inserts') / g('w9.casfs_s'):.0f} vs {g('w9.inserts') / g('w9.ext4_s'):.0f} inserts/s")
    # 10 packing
    if g("w10.pack_s") is not None:
        unpacked_objects = g("w10.unpacked_objects")
        unpacked_bytes = g("w10.unpacked_bytes")
        unpacked_detail = (f"{g('w10.intake_objects')} in intake packs, "
                           f"{g('w10.loose_objects')} loose")
        if unpacked_objects is None:  # a run from before intake packs
            unpacked_objects, unpacked_bytes = g("w10.loose_objects"), g("w10.loose_bytes")
            unpacked_detail = "loose"
        rows.append(dict(
            id="10a", workload="casfsctl pack --wait of the tree's unpacked objects", ext4="—",
            casfs=fmt_s(g("w10.pack_s")), ratio=None,
            ratio_text=f"{g('w10.pack_mb_s'):.0f} MB/s", target="", met=None,
            details=(f"{unpacked_objects} objects ({unpacked_detail}), {unpacked_bytes / MB:.0f} MB raw → "
                     f"{g('w10.stored_after') / MB:.0f} MB stored")))
    if g("w10.packed_read_s") is not None:
        e = g("w2.ext4_s")
        c = g("w10.packed_read_s")
        r = ratio(c, e)
        rows.append(dict(id="10c", workload="read the tree back, cold, from packs",
                         ext4=fmt_s(e), casfs=fmt_s(c), ratio=r, ratio_text=fmt_ratio(r),
                         target="", met=None,
                         details="as 2, after 10a (ext4 figure from 2); tree fingerprint (tar_sum) matches"))
    if g("w10.packer_untar_s") is not None:
        e = g("w1.ext4_s")
        c = g("w10.packer_untar_s")
        base = g("w1.casfs_s")
        r = ratio(c, base)
        rows.append(dict(
            id="10b", workload="untar + sync with the background packer running",
            ext4=fmt_s(e), casfs=fmt_s(c), ratio=r, ratio_text=f"{fmt_ratio(r)} of 1",
            target="", met=None,
            details=(f"-o pack_loose_objects={g('w10.packer_threshold')}; ratio to workload 1's casfs "
                     f"time ({fmt_s(base)}, no packer); casfs/ext4 {fmt_ratio(ratio(c, e))}; packer runs "
                     f"{g('w10.packer_runs')}, {g('w10.packer_objects_packed')} objects packed by the end")))
    # 11 borg, restic
    if g("w11.casfs_stored") is not None:
        cs, bs = g("w11.casfs_stored"), g("w11.borg_repo_bytes")
        r = ratio(cs, bs)
        rows.append(dict(
            id="11", workload="stored size of the tree: casfs packed vs borg repository",
            ext4=f"borg {fmt_mb(bs)}", casfs=fmt_mb(cs), ratio=r, ratio_text=fmt_ratio(r),
            target="≤ 1×", met=None if r is None else r <= 1.0,
            details=(f"casfs objects' stored bytes; the whole store on disk (du, incl. LMDB) "
                     f"{fmt_mb(g('w11.casfs_du'))}; tree {fmt_mb(g('w11.tree_bytes'))}")))
        rows.append(dict(
            id="11b", workload="borg create --compression zstd,3", ext4="—",
            casfs=fmt_s(g("w11.borg_s")), ratio=None, ratio_text="—", target="", met=None,
            details=f"repository {fmt_mb(bs)} (encryption none), from the tmpfs copy"))
        rows.append(dict(
            id="11c", workload="restic backup", ext4="—",
            casfs=fmt_s(g("w11.restic_s")), ratio=None, ratio_text="—", target="", met=None,
            details=(f"repository {fmt_mb(g('w11.restic_repo_bytes'))} (always encrypted; repo "
                     f"version {g('w11.restic_repo_version')}, compression auto), from the tmpfs copy")))
    # RSS
    peaks = {k.split(".")[0]: v for k, v in f.items() if k.endswith(".rss_kib") and k.startswith("w")}
    if peaks:
        top = max(peaks.values())
        per = ", ".join(f"{k[1:]}: {v / 1024:.0f}" for k, v in
                        sorted(peaks.items(), key=lambda kv: int(kv[0][1:])))
        rows.append(dict(id="RSS", workload="casfs daemon peak RSS (VmHWM), all workloads",
                         ext4="—", casfs=f"{top / 1024:.0f} MiB", ratio=None, ratio_text="—",
                         target="≤ 512 MiB", met=top <= 512 * 1024,
                         details=f"per workload, MiB: {per}"))
    cpu = {k.split(".")[0]: v for k, v in f.items() if k.endswith(".daemon_cpu_s") and k.startswith("w")}
    if cpu:
        per = ", ".join(f"{k[1:]}: {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: int(kv[0][1:])))
        rows.append(dict(id="CPU", workload="casfs daemon CPU time (user + system)", ext4="—",
                         casfs=f"{sum(cpu.values()):.1f} s", ratio=None, ratio_text="—", target="",
                         met=None, details=f"per workload, s (setup steps included): {per}"))
    return rows


def report(args):
    figs = load_figs(args.figs)
    rows = build_rows(figs)
    lines = ["| # | workload | ext4 (or reference) | FUSE floor | casfs | ratio | target | met? | details |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        r.setdefault("floor", "—")
        lines.append(f"| {r['id']} | {r['workload']} | {r['ext4']} | {r['floor']} | {r['casfs']} | "
                     f"{r['ratio_text']} | {r['target'] or ''} | {met} | {r['details']} |")
    table = "\n".join(lines)
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n")
    tree = nested(figs)
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": sh("git", "-C", tree.get("meta", {}).get("repo", "."), "rev-parse", "HEAD"),
        "git_changed_files": (sh("git", "-C", tree.get("meta", {}).get("repo", "."), "status",
                                 "--porcelain", "--untracked-files=no") or "").splitlines(),
        "machine": machine(figs),
        "meta": tree.pop("meta", {}),
        "workloads": tree,
        "rows": [{k: v for k, v in r.items() if k != "ratio_text"} for r in rows],
        "table_markdown": table,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tarstats")
    s.add_argument("tar")
    s = sub.add_parser("get")
    s.add_argument("file")
    s.add_argument("key")
    s = sub.add_parser("report")
    s.add_argument("--figs", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--md")
    a = p.parse_args()
    if a.cmd == "tarstats":
        tarstats(a.tar)
    elif a.cmd == "get":
        get(a.file, a.key)
    else:
        report(a)


if __name__ == "__main__":
    sys.exit(main())
