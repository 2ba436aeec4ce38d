#!/usr/bin/python3
"""The boot-storm benchmark: N desktops of one template boot at once.

Usage: bench/bootstorm/run [--quick] [--n 1,5,10,20,40] [--out DIR]
                           [--iops 200] [--bps 150000000] [--no-reflink]
                           [--check-targets]

Two loop-device filesystems are the tiers: "HDD" (primary) read through a
blkio throttle (200 read IOPS, 150 MB/s by default), "SSD" (secondary) not.
A qcow2 template with scattered data lives on the HDD. For each
configuration
  hdd   a plain libvirt dir pool on the HDD: template and overlays there
  none  stormpool, instances on the SSD backing onto the template on the HDD
  copy  stormpool <stormpool:replica policy='copy'/>: instances back onto a
        replica of the template in the SSD tier
and each N, N instances are made with vol-create-as and replayed at once by
qemu-io with O_DIRECT on the whole chain (-t none), each process in the
throttled cgroup, caches dropped before. Reported per run: makespan, p50/p95
per-instance boot time, per tier the read IOs and bytes from
/sys/block/loopN/stat; for copy also the replica's creation time against
`cp --sparse=always` of the same file between the same filesystems, and on a
reflink-capable XFS. Writes results.md, results.json and PNG plots to --out
(default _build/bench/bootstorm) and prints the table and the targets.

--quick: N = 2, a small template and trace, small filesystems (make check).
--check-targets: exit 1 if a target fails (default: report only).
Run as root, through bench/bootstorm/run (it points virsh at the private
daemons of tools/virt-env and starts them if needed).
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

import pools
import report
import trace
from tiers import Cleanup, Throttle, Tier, allocated, drop_caches, sh

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = "base.qcow2"
SAMPLE_INTERVAL = 0.5
STORM_TIMEOUT = 900
TARGET_N = 20
MiB = 1024 * 1024
GiB = 1024 * MiB

CONFIGS = [
    ("hdd", "all on HDD (dir pool)"),
    ("none", "stormpool, replica none"),
    ("copy", "stormpool, replica copy"),
]


def log(msg):
    print("bootstorm: " + msg, flush=True)


def parse_args(argv):
    paragraphs = __doc__.split("\n\n")
    ap = argparse.ArgumentParser(prog="bench/bootstorm/run",
                                 usage=paragraphs[1][len("Usage: "):],
                                 description="\n\n".join([paragraphs[0]] + paragraphs[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N=2, tiny template and trace")
    ap.add_argument("--n", help="comma-separated instance counts (default 1,5,10,20,40)")
    ap.add_argument("--out", default=os.path.join(TOP, "_build", "bench", "bootstorm"),
                    help="results directory (default _build/bench/bootstorm)")
    ap.add_argument("--iops", type=int, default=200, help="HDD read IOPS limit")
    ap.add_argument("--bps", type=int, default=150 * 1000 * 1000,
                    help="HDD read bytes/s limit")
    ap.add_argument("--no-reflink", action="store_true", help="skip the XFS reflink variant")
    ap.add_argument("--check-targets", action="store_true",
                    help="exit 1 if a target fails")
    args = ap.parse_args(argv)
    default_n = "2" if args.quick else "1,5,10,20,40"
    args.ns = sorted({int(x) for x in (args.n or default_n).split(",") if x.strip()})
    if not args.ns or min(args.ns) < 1 or max(args.ns) > 99:
        ap.error("--n takes counts between 1 and 99")
    return args


class Bench:
    def __init__(self, args):
        self.args = args
        self.profile = trace.QUICK if args.quick else trace.FULL
        self.tag = "spb-bootstorm-%d" % os.getpid()
        self.work = os.path.join(TOP, "_build", "bench", "bootstorm-work-%d" % os.getpid())
        self.cleanup = Cleanup()
        self.replays = []                  # live qemu-io processes
        self.results = {"configs": {}, "replica": None, "reflink": None}

    # --- setup -----------------------------------------------------------

    def setup(self):
        os.makedirs(self.work)
        self.cleanup.push("remove %s" % self.work, remove_workdir, self.work)
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs)
        fs_size = 256 * MiB if self.args.quick else 4 * GiB
        self.hdd = Tier("HDD", os.path.join(self.work, "hdd.img"),
                        os.path.join(self.work, "hdd"), fs_size, "ext4", self.cleanup)
        self.ssd = Tier("SSD", os.path.join(self.work, "ssd.img"),
                        os.path.join(self.work, "ssd"), fs_size, "ext4", self.cleanup)
        self.tiers = [self.hdd, self.ssd]
        self.throttle = Throttle(self.tag, self.cleanup)
        self.throttle.limit(self.hdd.majmin, self.args.iops, self.args.bps)
        self.cleanup.push("kill qemu-io replays", self.kill_replays)
        log("tiers: HDD %s on %s (throttled %d IOPS, %.0f MB/s, cgroup v%d), SSD %s on %s"
            % (self.hdd.device, self.hdd.mountpoint, self.args.iops, self.args.bps / 1e6,
               self.throttle.version, self.ssd.device, self.ssd.mountpoint))
        self.templates = self.hdd.path("templates")
        os.makedirs(self.templates)
        self.template = os.path.join(self.templates, TEMPLATE)
        self.make_template()
        self.trace = trace.boot_trace(self.profile)
        self.commands = []
        for cmd in trace.read_commands(self.trace):
            self.commands += ["-c", cmd]
        self.replica_ok = pools.replica_supported(self.tag + "-probe", self.templates,
                                                  self.ssd.path("probe"), self.work)
        log("replica policy %s" % ("available" if self.replica_ok else "not available"))

    def make_template(self):
        p = self.profile
        start = time.monotonic()
        sh("qemu-img", "create", "-q", "-f", "qcow2", self.template, str(p.virtual_size))
        argv = ["qemu-io", "-f", "qcow2"]
        for cmd in trace.write_commands(p):
            argv += ["-c", cmd]
        out = sh(*(argv + [self.template]))
        if "failed" in out:
            raise RuntimeError("writing the template: " + out[-2000:])
        os.sync()
        log("template %s: %d MiB virtual, %d MiB data in %d extents (%.1f s)"
            % (self.template, p.virtual_size // MiB, allocated(self.template) // MiB,
               p.extents + 2, time.monotonic() - start))

    # --- one storm -------------------------------------------------------

    def storm(self, paths, label):
        """Replay the boot trace on every path at once; measure."""
        drop_caches(self.tiers)
        before = [t.stat() for t in self.tiers]
        samples = [(0.0, before)]
        t0 = time.monotonic()
        runs = []
        try:
            for i, path in enumerate(paths):
                out = open(os.path.join(self.logs, "%s-%02d.log" % (label, i + 1)), "w")
                started = time.monotonic()
                proc = subprocess.Popen(
                    ["qemu-io", "-r", "-t", "none", "-f", "qcow2"] + self.commands + [path],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=self.throttle.join_self)
                out.close()
                self.replays.append(proc)
                runs.append({"proc": proc, "start": started, "end": None, "log": out.name})
            self.wait(runs, t0, samples)
        finally:
            self.kill_replays()
        after = [t.stat() for t in self.tiers]
        samples.append((time.monotonic() - t0, after))
        self.check_replays(runs)
        times = sorted(r["end"] - r["start"] for r in runs)
        return {
            "n": len(paths),
            "makespan": max(r["end"] for r in runs) - t0,
            "p50": percentile(times, 50),
            "p95": percentile(times, 95),
            "boot_times": times,
            "hdd_reads": after[0][0] - before[0][0],
            "hdd_bytes": after[0][1] - before[0][1],
            "ssd_reads": after[1][0] - before[1][0],
            "ssd_bytes": after[1][1] - before[1][1],
            "series": [(t, [list(s) for s in st]) for t, st in samples],
        }

    def wait(self, runs, t0, samples):
        pending = list(runs)
        next_sample = t0 + SAMPLE_INTERVAL
        while pending:
            now = time.monotonic()
            for run in list(pending):
                if run["proc"].poll() is not None:
                    run["end"] = now
                    pending.remove(run)
            if now >= next_sample:
                samples.append((now - t0, [t.stat() for t in self.tiers]))
                next_sample += SAMPLE_INTERVAL
            if now - t0 > STORM_TIMEOUT:
                raise RuntimeError("storm did not finish in %d s" % STORM_TIMEOUT)
            time.sleep(0.005)

    def check_replays(self, runs):
        for run in runs:
            with open(run["log"]) as f:
                text = f.read()
            if run["proc"].returncode != 0 or "failed" in text or "error" in text.lower():
                raise RuntimeError("qemu-io replay failed (exit %s), %s:\n%s"
                                   % (run["proc"].returncode, run["log"], text[-2000:]))

    def kill_replays(self):
        for proc in self.replays:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.replays = []

    # --- configurations --------------------------------------------------

    def make_pool(self, config):
        name = "%s-%s" % (self.tag, config)
        if config == "hdd":
            return pools.Pool.dir_pool(name, self.templates, self.cleanup)
        policy = config if self.replica_ok else None   # no element = today's 'none'
        return pools.Pool.stormpool(name, self.templates, self.ssd.path("lab-" + config),
                                    policy, self.work, self.cleanup)

    def run_config(self, config, label):
        entry = {"label": label, "status": "ok", "runs": []}
        self.results["configs"][config] = entry
        if config == "copy" and not self.replica_ok:
            entry["status"] = "skipped: replica policy not available"
            log("[copy] " + entry["status"])
            return
        pool = self.make_pool(config)
        size = self.profile.virtual_size
        if config == "copy":
            self.results["replica"] = self.measure_replica(pool, size)
        for n in self.args.ns:
            paths = pool.grow_to(n, TEMPLATE, size)
            self.check_backing(config, paths)
            run = self.storm(paths, "%s-n%02d" % (config, n))
            entry["runs"].append(run)
            log("[%s] N=%-2d makespan %7.2f s  p50 %6.2f s  p95 %6.2f s  HDD %5d reads %8.1f MiB"
                "  SSD %5d reads %8.1f MiB" % (config, n, run["makespan"], run["p50"], run["p95"],
                                               run["hdd_reads"], run["hdd_bytes"] / MiB,
                                               run["ssd_reads"], run["ssd_bytes"] / MiB))
        entry["vol_create_median"] = statistics.median(s for _, _, s in pool.instances)
        pool.remove()

    def check_backing(self, config, paths):
        """The chains are what the configuration means: copy backs onto a
        replica in the SSD tier, hdd and none onto the template itself."""
        for path in paths:
            backing = pools.backing_file(path)
            if config == "copy":
                ok = is_under(backing, self.ssd.mountpoint)
            else:
                ok = bool(backing) and os.path.realpath(backing) == os.path.realpath(self.template)
            if not ok:
                raise RuntimeError("%s: %s backs onto %s, not %s" % (
                    config, path, backing,
                    "a replica in " + self.ssd.mountpoint if config == "copy" else self.template))

    # --- replica creation against cp ------------------------------------

    def measure_replica(self, pool, size):
        drop_caches(self.tiers)
        hdd0 = self.hdd.stat()
        path, first = pool.create_instance("pc01.qcow2", TEMPLATE, size)
        hdd1 = self.hdd.stat()
        replica = pools.backing_file(path)
        overlay = pool.create_instance("pc02.qcow2", TEMPLATE, size)[1]
        data = allocated(self.template)
        seconds = max(first - overlay, 1e-6)
        cp = timed_copy(self.template, self.ssd.path("cp-test.qcow2"), ["--sparse=always"],
                        self.tiers)
        result = {
            "template": self.template,
            "replica": replica,
            "replica_in_secondary": is_under(replica, self.ssd.mountpoint),
            "replica_allocated": allocated(replica) if replica and os.path.exists(replica) else None,
            "data_bytes": data,
            "first_vol_create_s": first,
            "overlay_vol_create_s": overlay,
            "replica_s": seconds,
            "replica_MBps": data / 1e6 / seconds,
            "hdd_bytes_read": hdd1[1] - hdd0[1],
            "cp_s": cp,
            "cp_MBps": data / 1e6 / cp,
            "ratio": cp / seconds,
        }
        log("[copy] replica %s: %.2f s (%.0f MB/s); cp --sparse=always %.2f s (%.0f MB/s);"
            " ratio %.2f" % (replica, seconds, result["replica_MBps"], cp, result["cp_MBps"],
                             result["ratio"]))
        return result

    def reflink_variant(self):
        """Both tiers on one XFS with reflink=1, policy copy: the replica
        should be a reflink, compared with cp --reflink=always/never."""
        if self.args.no_reflink:
            return {"status": "skipped: --no-reflink"}
        if not self.replica_ok:
            return {"status": "skipped: replica policy not available"}
        if not shutil.which("mkfs.xfs"):
            return {"status": "skipped: mkfs.xfs not installed (xfsprogs)"}
        xfs = Tier("XFS", os.path.join(self.work, "xfs.img"), os.path.join(self.work, "xfs"),
                   512 * MiB if self.args.quick else 2 * GiB, "xfs", self.cleanup)
        templates = xfs.path("templates")
        os.makedirs(templates)
        template = os.path.join(templates, TEMPLATE)
        sh("cp", "--reflink=never", "--sparse=always", self.template, template)
        os.sync()
        pool = pools.Pool.stormpool(self.tag + "-reflink", templates, xfs.path("lab"), "copy",
                                    self.work, self.cleanup)
        size = self.profile.virtual_size
        drop_caches([xfs])
        free0 = free_bytes(xfs.mountpoint)
        path, first = pool.create_instance("pc01.qcow2", TEMPLATE, size)
        used = free0 - free_bytes(xfs.mountpoint)
        replica = pools.backing_file(path)
        overlay = pool.create_instance("pc02.qcow2", TEMPLATE, size)[1]
        pool.remove()
        seconds = max(first - overlay, 1e-6)
        full = timed_copy(template, xfs.path("cp-never.qcow2"),
                          ["--reflink=never", "--sparse=always"], [xfs])
        clone = timed_copy(template, xfs.path("cp-always.qcow2"), ["--reflink=always"], [xfs])
        result = {
            "status": "ok",
            "replica": replica,
            "replica_s": seconds,
            "space_used_bytes": used,
            "data_bytes": allocated(template),
            "cp_never_s": full,
            "cp_always_s": clone,
        }
        log("[reflink] replica %.3f s, %.1f MiB new space; cp --reflink=never %.2f s;"
            " cp --reflink=always %.3f s" % (seconds, used / MiB, full, clone))
        return result

    # --- the whole run ---------------------------------------------------

    def run(self):
        started = time.monotonic()
        self.setup()
        for config, label in CONFIGS:
            self.run_config(config, label)
        self.results["reflink"] = self.reflink_variant()
        self.results["targets"] = evaluate_targets(self.results, self.args.ns)
        self.results["meta"] = self.meta(time.monotonic() - started)
        return self.results

    def meta(self, elapsed):
        qemu = sh("qemu-io", "--version").splitlines()[0]
        return {
            "quick": self.args.quick,
            "ns": self.args.ns,
            "iops": self.args.iops,
            "bps": self.args.bps,
            "cgroup": "v%d" % self.throttle.version,
            "loop_direct_io": {t.name: t.direct_io for t in self.tiers},
            "kernel": platform.release(),
            "qemu": qemu,
            "cpus": os.cpu_count(),
            "trace": trace.describe(self.profile, self.trace),
            "elapsed_s": elapsed,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "workdir": self.work,
            "pools": ["%s-%s" % (self.tag, c) for c, _ in CONFIGS] + [self.tag + "-reflink"],
            "cgroup_path": self.throttle.path,
        }


# --- helpers ---------------------------------------------------------------

def percentile(sorted_values, pct):
    """Nearest-rank percentile of a sorted list."""
    rank = max(1, -(-pct * len(sorted_values) // 100))
    return sorted_values[int(rank) - 1]


def timed_copy(src, dst, options, tiers):
    """Seconds to copy @src to @dst with cp @options and fsync it, caches cold."""
    drop_caches(tiers)
    start = time.monotonic()
    sh("cp", *options, src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.monotonic() - start
    os.unlink(dst)
    return seconds


def is_under(path, directory):
    return bool(path) and os.path.realpath(path).startswith(os.path.realpath(directory) + "/")


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def run_at(results, config, n):
    for run in results["configs"].get(config, {}).get("runs", []):
        if run["n"] == n:
            return run
    return None


def evaluate_targets(results, ns):
    n = TARGET_N if TARGET_N in ns else max(ns)
    copy, none = run_at(results, "copy", n), run_at(results, "none", n)
    replica = results.get("replica")
    targets = []

    def add(name, ok, detail):
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        targets.append({"name": name, "status": status, "detail": detail})

    skip = results["configs"].get("copy", {}).get("status", "not run")
    if copy is None:
        add("copy N=%d: zero primary-tier reads during the storm" % n, None, skip)
        add("copy N=%d: makespan >= 5x better than none" % n, None, skip)
    else:
        add("copy N=%d: zero primary-tier reads during the storm" % n,
            copy["hdd_reads"] == 0, "%d reads, %d bytes from the HDD"
            % (copy["hdd_reads"], copy["hdd_bytes"]))
        speedup = none["makespan"] / copy["makespan"]
        add("copy N=%d: makespan >= 5x better than none" % n, speedup >= 5,
            "none %.2f s / copy %.2f s = %.1fx" % (none["makespan"], copy["makespan"], speedup))
    if replica is None:
        add("replica creation >= 80% of cp --sparse=always throughput", None, skip)
    else:
        add("replica creation >= 80% of cp --sparse=always throughput", replica["ratio"] >= 0.8,
            "replica %.0f MB/s, cp %.0f MB/s: %.0f%%" % (replica["replica_MBps"],
                                                       replica["cp_MBps"], 100 * replica["ratio"]))
    reflink = results.get("reflink") or {}
    if reflink.get("status") == "ok":
        near = reflink["replica_s"] <= 0.2 * reflink["cp_never_s"] and \
            reflink["space_used_bytes"] < 0.05 * reflink["data_bytes"]
        add("reflink: replica near-instant and sharing blocks", near,
            "replica %.3f s vs cp --reflink=never %.2f s, %.1f MiB new space"
            % (reflink["replica_s"], reflink["cp_never_s"], reflink["space_used_bytes"] / MiB))
    else:
        add("reflink: replica near-instant and sharing blocks", None,
            reflink.get("status", "not run"))
    return targets


def remove_workdir(path):
    mounted = [d for d in (os.path.join(path, x) for x in ("hdd", "ssd", "xfs"))
               if os.path.ismount(d)]
    if mounted:
        raise RuntimeError("still mounted, %s kept: %s" % (path, ", ".join(mounted)))
    shutil.rmtree(path)


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bootstorm: run as root (loop devices, mounts, cgroups)")
    for tool in ("qemu-io", "qemu-img", "virsh", "losetup", "mkfs.ext4", "blockdev"):
        if not shutil.which(tool):
            sys.exit("bootstorm: %s not found (run through bench/bootstorm/run)" % tool)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    bench = Bench(args)
    status = 0
    try:
        results = bench.run()
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            print("bootstorm: interrupted", file=sys.stderr)
        else:
            import traceback
            traceback.print_exc()
        results, status = None, 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        errors = bench.cleanup.run()
        for error in errors:
            print("bootstorm: teardown: %s" % error, file=sys.stderr)
        if errors:
            status = 1
    if results is None:
        return status
    os.makedirs(args.out, exist_ok=True)
    text = report.write(results, args.out)
    print(text)
    log("results in %s (%.0f s)" % (args.out, results["meta"]["elapsed_s"]))
    if args.check_targets and any(t["status"] == "FAIL" for t in results["targets"]):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
