#!/usr/bin/python3
"""The boot-storm benchmark: N desktops of one template boot at once.

Usage: bench/bootstorm/run [--quick] [--n 1,5,10,20,40] [--out DIR]
                           [--traces synthetic,real] [--iops 200] [--bps 150000000]
                           [--ssd-iops 50000] [--ssd-bps 500000000]
                           [--mem-fraction 0.25] [--no-reflink] [--check-targets]

Two loop-device filesystems are the tiers: "HDD" (primary) read through a
blkio throttle (200 read IOPS, 150 MB/s by default), "SSD" (secondary)
through one of a SATA SSD (50k IOPS, 500 MB/s). Two traces, each with its
own template on the HDD:
  synthetic  a seeded trace over a 2 GiB template with scattered data
  real       the boot of a real Debian guest (tools/build-guest-image),
             recorded from QEMU's block trace points (bench/bootstorm/guest.py)
For each trace, configuration and N, N instances are made with vol-create-as
and replayed at once by qemu-io, each process in the throttled cgroup,
caches dropped before:
  hdd         a plain libvirt dir pool on the HDD, cache=none (O_DIRECT)
  hdd-wb      the same instances, cache=writeback: the host page cache
              shares the template's blocks between the replays
  hdd-wb-mem  the same, the replays' memory cgroup capped at their own
              memory (measured in the hdd storm of the same N) plus
              --mem-fraction of the trace's distinct bytes (a host whose
              RAM belongs to its guests)
  none        stormpool, instances on the SSD backing onto the template
  copy        stormpool <stormpool:replica policy='copy'/> (SSD tier)
  hot         stormpool policy='hot' (SSD tier): one instance is booted
              with copy-on-read, pool-refresh learns the hot set from it
  hot-ram     the same, the hot replica in a RAM tier (tier='/dev/shm/..')
  copy-ram    policy='copy', the full replica in a RAM tier
  floor       the CPU floor: template and instances in RAM (tmpfs)
Reported per run: makespan, p50/p95 per-instance boot time, per tier the
read IOs and bytes (/sys/block/loopN/stat); per configuration the fast-tier
(or RAM) bytes per template and the time from a new template to its first
storm-proof instance. Writes results.md, results.json and PNG plots to
--out (default _build/bench/bootstorm) and prints the table and targets.

--quick: N = 2, the small synthetic template and the first 300 reads of the
real trace, small filesystems (make check).
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

import guest
import pools
import report
import trace
from tiers import Cleanup, MemoryLimit, Throttle, Tier, allocated, drop_caches, sh

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = "base.qcow2"
REAL_TEMPLATE = "debian.qcow2"
QUICK_REAL_READS = 300
SAMPLE_INTERVAL = 0.5
STORM_TIMEOUT = 900
TARGET_N = 20
MiB = 1024 * 1024
GiB = 1024 * MiB

CONFIGS = [
    ("hdd", "dir pool on HDD, cache=none"),
    ("hdd-wb", "dir pool on HDD, cache=writeback (page cache)"),
    ("hdd-wb-mem", "dir pool on HDD, writeback, page cache capped"),
    ("none", "stormpool none, SSD tier"),
    ("copy", "stormpool copy, SSD tier"),
    ("hot", "stormpool hot, SSD tier"),
    ("hot-ram", "stormpool hot, RAM tier"),
    ("copy-ram", "stormpool copy, RAM tier"),
    ("floor", "CPU floor: all in RAM"),
]
# The stormpool configurations with a replica: its policy and whether it
# lives in a RAM tier.
REPLICA_CONFIGS = {"copy": ("copy", False), "hot": ("hot", False),
                   "hot-ram": ("hot", True), "copy-ram": ("copy", True)}
# The page-cache configurations replay the hdd pool's instances.
SAME_INSTANCES = {"hdd-wb": "hdd", "hdd-wb-mem": "hdd"}


def learned_hot_sets(directory):
    """The hot sets saved in @directory, not the temporary files of one
    being written."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [n for n in names if not n.startswith(".stormpool-tmp-")]


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
    ap.add_argument("--ssd-iops", type=int, default=50000, help="SSD read IOPS limit")
    ap.add_argument("--ssd-bps", type=int, default=500 * 1000 * 1000,
                    help="SSD read bytes/s limit")
    ap.add_argument("--mem-fraction", type=float, default=0.25,
                    help="hdd-wb-mem: page cache cap as a fraction of the trace's distinct bytes")
    ap.add_argument("--traces", default="synthetic,real",
                    help="comma-separated traces: synthetic, real (default both)")
    ap.add_argument("--no-reflink", action="store_true", help="skip the XFS reflink variant")
    ap.add_argument("--check-targets", action="store_true",
                    help="exit 1 if a target fails")
    args = ap.parse_args(argv)
    default_n = "2" if args.quick else "1,5,10,20,40"
    args.ns = sorted({int(x) for x in (args.n or default_n).split(",") if x.strip()})
    if not args.ns or min(args.ns) < 1 or max(args.ns) > 99:
        ap.error("--n takes counts between 1 and 99")
    args.trace_names = [t for t in args.traces.split(",") if t]
    if not args.trace_names or set(args.trace_names) - {"synthetic", "real"}:
        ap.error("--traces takes synthetic and/or real")
    if not 0 < args.mem_fraction <= 1:
        ap.error("--mem-fraction takes a fraction in (0, 1]")
    return args


class Workload:
    """One trace with its template on the HDD tier."""

    def __init__(self, name, template, reads, virtual_size, describe):
        self.name = name
        self.template = template
        self.templates = os.path.dirname(template)
        self.template_name = os.path.basename(template)
        self.reads = reads                      # [(offset, length)]
        self.virtual_size = virtual_size
        self.describe = describe
        self.distinct = guest.distinct_bytes(reads)
        self.commands = []
        for offset, length in reads:
            self.commands += ["-c", "read -q %d %d" % (offset, length)]


class Bench:
    def __init__(self, args):
        self.args = args
        self.profile = trace.QUICK if args.quick else trace.FULL
        self.tag = "spb-bootstorm-%d" % os.getpid()
        self.work = os.path.join(TOP, "_build", "bench", "bootstorm-work-%d" % os.getpid())
        self.ram = "/dev/shm/%s" % self.tag
        self.cleanup = Cleanup()
        self.replays = []                  # live qemu-io processes
        self.results = {"traces": {}, "reflink": None}

    # --- setup -----------------------------------------------------------

    def setup(self):
        os.makedirs(self.work)
        self.cleanup.push("remove %s" % self.work, remove_workdir, self.work)
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs)
        os.makedirs(self.ram)
        self.cleanup.push("remove %s" % self.ram, shutil.rmtree, self.ram)
        fs_size = (1 * GiB if "real" in self.args.trace_names else 256 * MiB) \
            if self.args.quick else 6 * GiB
        self.hdd = Tier("HDD", os.path.join(self.work, "hdd.img"),
                        os.path.join(self.work, "hdd"), fs_size, "ext4", self.cleanup)
        self.ssd = Tier("SSD", os.path.join(self.work, "ssd.img"),
                        os.path.join(self.work, "ssd"), fs_size, "ext4", self.cleanup)
        self.tiers = [self.hdd, self.ssd]
        self.throttle = Throttle(self.tag, self.cleanup)
        self.throttle.limit(self.hdd.majmin, self.args.iops, self.args.bps)
        self.throttle.limit(self.ssd.majmin, self.args.ssd_iops, self.args.ssd_bps)
        self.memory = MemoryLimit(self.tag, self.cleanup)
        self.cleanup.push("kill qemu-io replays", self.kill_replays)
        log("tiers: HDD %s on %s (%d IOPS, %.0f MB/s), SSD %s on %s (%d IOPS, %.0f MB/s), "
            "blkio cgroup v%d" % (self.hdd.device, self.hdd.mountpoint, self.args.iops,
                                  self.args.bps / 1e6, self.ssd.device, self.ssd.mountpoint,
                                  self.args.ssd_iops, self.args.ssd_bps / 1e6,
                                  self.throttle.version))
        self.workloads = [self.make_workload(name) for name in self.args.trace_names]
        self.replica_ok = pools.replica_supported(self.tag + "-probe", self.hdd.mountpoint,
                                                  self.ssd.path("probe"), self.work)
        log("replica policy %s" % ("available" if self.replica_ok else "not available"))

    def make_workload(self, name):
        templates = self.hdd.path("templates-" + name)
        os.makedirs(templates)
        if name == "synthetic":
            template = os.path.join(templates, TEMPLATE)
            self.make_template(template)
            reads = [(off, length) for _, off, length in trace.boot_trace(self.profile)]
            desc = trace.describe(self.profile, trace.boot_trace(self.profile))
            size = self.profile.virtual_size
        else:
            image = guest.template_path()
            trace_file = guest.cached_trace(image)
            template = os.path.join(templates, REAL_TEMPLATE)
            sh("cp", "--sparse=always", image, template)
            reads = guest.load(trace_file)
            full = guest.describe(reads, template)
            if self.args.quick:
                reads = reads[:QUICK_REAL_READS]
            desc = guest.describe(reads, template)
            desc["full_trace"] = full
            desc["trace_file"] = trace_file
            size = desc["virtual_size"]
        os.sync()
        workload = Workload(name, template, reads, size, desc)
        desc["distinct_bytes"] = workload.distinct
        log("trace %s: %d reads, %.1f MiB requested, %.1f MiB distinct, template %s"
            % (name, len(reads), sum(l for _, l in reads) / MiB, workload.distinct / MiB,
               template))
        return workload

    def make_template(self, template):
        p = self.profile
        start = time.monotonic()
        sh("qemu-img", "create", "-q", "-f", "qcow2", template, str(p.virtual_size))
        argv = ["qemu-io", "-f", "qcow2"]
        for cmd in trace.write_commands(p):
            argv += ["-c", cmd]
        out = sh(*(argv + [template]))
        if "failed" in out:
            raise RuntimeError("writing the template: " + out[-2000:])
        log("template %s: %d MiB virtual, %d MiB data in %d extents (%.1f s)"
            % (template, p.virtual_size // MiB, allocated(template) // MiB,
               p.extents + 2, time.monotonic() - start))

    # --- one storm -------------------------------------------------------

    def storm(self, w, paths, label, cache="none", mem_limit=None, commands=None):
        """Replay the boot trace (or @commands) on every path at once; measure."""
        commands = w.commands if commands is None else commands
        drop_caches(self.tiers)
        self.memory.set_limit(mem_limit)

        def join():
            self.throttle.join_self()
            self.memory.join_self()

        before = [t.stat() for t in self.tiers]
        samples = [(0.0, before)]
        t0 = time.monotonic()
        runs = []
        try:
            for i, path in enumerate(paths):
                out = open(os.path.join(self.logs, "%s-%02d.log" % (label, i + 1)), "w")
                started = time.monotonic()
                proc = subprocess.Popen(
                    replay_argv(commands, path, cache),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=join)
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
        # With O_DIRECT nothing of the tiers is cached: what the replays'
        # cgroup used at most is their own memory.
        own = self.memory.max_usage() if cache == "none" else None
        return {
            "own_memory": own,
            "n": len(paths),
            "cache": cache,
            "mem_limit": mem_limit,
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

    def make_pool(self, w, config):
        name = "%s-%s-%s" % (self.tag, w.name, config)
        if config == "hdd":
            return pools.Pool.dir_pool(name, w.templates, self.cleanup)
        if config == "floor":
            templates = os.path.join(self.ram, w.name)
            os.makedirs(templates)
            self.cleanup.push("remove %s" % templates, shutil.rmtree, templates)
            sh("cp", "--sparse=always", w.template, templates)
            return pools.Pool.dir_pool(name, templates, self.cleanup)
        policy, tier, cap = (config if self.replica_ok else None), None, None
        if config in REPLICA_CONFIGS:
            policy, in_ram = REPLICA_CONFIGS[config]
            if in_ram:
                tier = self.ram_tier(w, config)
                cap = "%dM" % (2 * allocated(w.template) // MiB + 64)
        return pools.Pool.stormpool(name, w.templates,
                                    self.ssd.path("lab-%s-%s" % (w.name, config)),
                                    policy, self.work, self.cleanup, tier, cap)

    def ram_tier(self, w, config):
        return os.path.join(self.ram, "tier-%s-%s" % (w.name, config))

    def mem_limit(self, w, own):
        """Room for the replays themselves (@own: what the same N replays
        used with O_DIRECT) plus a fraction of the trace's distinct bytes
        for the page cache."""
        return int(own + self.args.mem_fraction * w.distinct)

    def run_workload(self, w):
        entries = {}
        self.results["traces"][w.name] = {"trace": w.describe, "configs": entries}
        for config, label in CONFIGS:
            entries[config] = {"label": label, "status": "ok", "runs": []}
            if config in REPLICA_CONFIGS and not self.replica_ok:
                entries[config]["status"] = "skipped: replica policy not available"
        for config, _ in CONFIGS:
            if config in SAME_INSTANCES or entries[config]["status"] != "ok":
                continue
            self.run_config(w, config, entries)

    def run_config(self, w, config, entries):
        if config in ("hot", "hot-ram"):
            # Every pool of a configuration shares the template's directory,
            # as hosts share a store: a hot set published by the pool before
            # would spare this one its learning boot, which is what is
            # measured here. It goes before the pool starts, since the
            # start's own refresh already builds from a published hot set.
            shutil.rmtree(os.path.join(os.path.dirname(w.template), ".stormpool-hot-sets"),
                          ignore_errors=True)
        pool = self.make_pool(w, config)
        entry = entries[config]
        if config in ("copy", "copy-ram"):
            entry["replica"] = self.measure_replica(w, pool, config)
        elif config in ("hot", "hot-ram"):
            entry["replica"] = self.measure_hot(w, pool, config)
        followers = [c for c, base in SAME_INSTANCES.items() if base == config]
        for n in self.args.ns:
            paths = pool.grow_to(n, w.template_name, w.virtual_size)
            self.check_backing(w, config, paths)
            own = self.record(w, config, entry, paths, n, "none", None)["own_memory"]
            for follower in followers:
                limit = self.mem_limit(w, own) if follower == "hdd-wb-mem" else None
                self.record(w, follower, entries[follower], paths, n, "writeback", limit)
        entry["vol_create_median"] = statistics.median(s for _, _, s in pool.instances)
        entry["fast_tier_bytes"] = self.fast_tier_bytes(w, config, entry)
        entry["storm_proof_after_s"] = entry.get("replica", {}).get("storm_proof_after_s")
        for follower in followers:
            entries[follower]["fast_tier_bytes"] = 0        # the page cache is not kept
            entries[follower]["storm_proof_after_s"] = None
        pool.remove()

    def fast_tier_bytes(self, w, config, entry):
        if config in REPLICA_CONFIGS:
            return entry["replica"]["replica_allocated"]
        if config == "floor":
            return allocated(os.path.join(self.ram, w.name, w.template_name))
        return 0

    def record(self, w, config, entry, paths, n, cache, limit):
        run = self.storm(w, paths, "%s-%s-n%02d" % (w.name, config, n), cache, limit)
        entry["runs"].append(run)
        if config in ("hot", "hot-ram"):
            # What opening the same chains costs by itself: QEMU reads the
            # template's qcow2 header and tables when it opens the chain.
            opened = self.storm(w, paths, "%s-%s-open-n%02d" % (w.name, config, n), cache,
                                commands=["-c", "length"])
            run["open_hdd_reads"], run["open_hdd_bytes"] = opened["hdd_reads"], \
                opened["hdd_bytes"]
        if limit:
            run["page_cache_room"] = int(self.args.mem_fraction * w.distinct)
        log("[%s %s] N=%-2d makespan %7.2f s  p50 %6.2f s  p95 %6.2f s  HDD %5d reads %8.1f MiB"
            "  SSD %5d reads %8.1f MiB%s" % (w.name, config, n, run["makespan"], run["p50"],
                                            run["p95"], run["hdd_reads"], run["hdd_bytes"] / MiB,
                                            run["ssd_reads"], run["ssd_bytes"] / MiB,
                                            "  (memory cap %.0f MiB)" % (limit / MiB)
                                            if limit else ""))
        return run

    def check_backing(self, w, config, paths):
        """The chains are what the configuration means: the replica
        configurations back onto a replica in their tier (a hot replica in
        turn onto the template), the others onto the template itself."""
        template = w.template if config != "floor" else \
            os.path.join(self.ram, w.name, w.template_name)
        for path in paths:
            backing = pools.backing_file(path)
            if config in REPLICA_CONFIGS:
                self.check_replica(w, config, path, backing)
            elif not backing or os.path.realpath(backing) != os.path.realpath(template):
                raise RuntimeError("%s: %s backs onto %s, not %s" % (config, path, backing,
                                                                    template))

    def check_replica(self, w, config, path, replica):
        policy, in_ram = REPLICA_CONFIGS[config]
        tier = self.ram_tier(w, config) if in_ram else self.ssd.mountpoint
        if not is_under(replica, tier):
            raise RuntimeError("%s: %s backs onto %s, not a replica in %s"
                               % (config, path, replica, tier))
        below = pools.backing_file(replica)
        expect = w.template if policy == "hot" else None
        if not same_file(below, expect):
            raise RuntimeError("%s: the replica %s backs onto %s, not %s"
                               % (config, replica, below, expect or "nothing"))

    # --- replica creation against cp ------------------------------------

    def measure_replica(self, w, pool, config):
        drop_caches(self.tiers)
        hdd0 = self.hdd.stat()
        path, first = pool.create_instance("pc01.qcow2", w.template_name, w.virtual_size)
        hdd1 = self.hdd.stat()
        replica = pools.backing_file(path)
        self.check_replica(w, config, path, replica)
        overlay = pool.create_instance("pc02.qcow2", w.template_name, w.virtual_size)[1]
        data = allocated(w.template)
        seconds = max(first - overlay, 1e-6)
        cp_to = os.path.join(self.ram, "cp-test.qcow2") if REPLICA_CONFIGS[config][1] \
            else self.ssd.path("cp-test.qcow2")
        cp = timed_copy(w.template, cp_to, ["--sparse=always"], self.tiers)
        result = {
            "template": w.template,
            "replica": replica,
            "replica_in_secondary": is_under(replica, self.ssd.mountpoint),
            "storm_proof_after_s": first,
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
        log("[%s %s] replica %s: %.2f s (%.0f MB/s); cp --sparse=always %.2f s (%.0f MB/s);"
            " ratio %.2f" % (w.name, config, replica, seconds, result["replica_MBps"], cp,
                             result["cp_MBps"], result["ratio"]))
        return result

    def measure_hot(self, w, pool, config):
        """A new template under policy='hot', as an admin meets it: an
        instance made at once (backing onto the template), booted once with
        copy-on-read on the HDD's own budget, pool-refresh, then the first
        instance backing onto the hot replica. The learner is deleted."""
        drop_caches(self.tiers)
        t0 = time.monotonic()
        learner, create_s = pool.create_learner("learn.qcow2", w.template_name, w.virtual_size)
        if os.path.realpath(pools.backing_file(learner)) != os.path.realpath(w.template):
            raise RuntimeError("%s: the learner %s does not back onto the template"
                               % (config, learner))
        start = time.monotonic()
        log_path = os.path.join(self.logs, "%s-%s-learn.log" % (w.name, config))
        with open(log_path, "w") as out:
            proc = subprocess.run(replay_argv(w.commands, learner, copy_on_read=True),
                                  stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT,
                                  preexec_fn=self.throttle.join_self)
        boot_s = time.monotonic() - start
        self.check_replays([{"proc": proc, "log": log_path}])
        start = time.monotonic()
        pools.virsh("pool-refresh", pool.name)
        # refresh hands learning to the pool's background worker: the
        # hot set is known once its file is there under its own name, not
        # while it is still the temporary file the worker renames
        hot_sets = os.path.join(os.path.dirname(learner), ".stormpool-hot-sets",
                                w.template_name)
        deadline = start + 300
        while not learned_hot_sets(hot_sets):
            if time.monotonic() > deadline:
                raise RuntimeError("%s: no hot set learned 300 s after pool-refresh" % config)
            time.sleep(0.02)
        refresh_s = time.monotonic() - start
        path, first = pool.create_instance("pc01.qcow2", w.template_name, w.virtual_size)
        ready = time.monotonic() - t0
        replica = pools.backing_file(path)
        self.check_replica(w, config, path, replica)
        pool.delete_learners()
        result = {
            "template": w.template,
            "replica": replica,
            "replica_allocated": allocated(replica),
            "data_bytes": allocated(w.template),
            "distinct_bytes": w.distinct,
            "learner_vol_create_s": create_s,
            "learning_boot_s": boot_s,
            "refresh_s": refresh_s,
            "first_vol_create_s": first,
            "replica_s": refresh_s + first,
            "storm_proof_after_s": ready,
        }
        log("[%s %s] learner made in %.2f s, copy-on-read boot %.2f s, pool-refresh %.2f s,"
            " first instance %.2f s: storm-proof %.2f s after the template; hot replica %s"
            " %.1f MiB (distinct bytes of the trace %.1f MiB)"
            % (w.name, config, create_s, boot_s, refresh_s, first, ready, replica,
               result["replica_allocated"] / MiB, w.distinct / MiB))
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
        w = self.workloads[0]
        template = os.path.join(templates, w.template_name)
        sh("cp", "--reflink=never", "--sparse=always", w.template, template)
        os.sync()
        pool = pools.Pool.stormpool(self.tag + "-reflink", templates, xfs.path("lab"), "copy",
                                    self.work, self.cleanup)
        size = w.virtual_size
        drop_caches([xfs])
        free0 = free_bytes(xfs.mountpoint)
        path, first = pool.create_instance("pc01.qcow2", w.template_name, size)
        used = free0 - free_bytes(xfs.mountpoint)
        replica = pools.backing_file(path)
        overlay = pool.create_instance("pc02.qcow2", w.template_name, size)[1]
        pool.remove()
        seconds = max(first - overlay, 1e-6)
        full = timed_copy(template, xfs.path("cp-never.qcow2"),
                          ["--reflink=never", "--sparse=always"], [xfs])
        clone = timed_copy(template, xfs.path("cp-always.qcow2"), ["--reflink=always"], [xfs])
        result = {
            "status": "ok",
            "trace": w.name,
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
        for w in self.workloads:
            self.run_workload(w)
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
            "ssd_iops": self.args.ssd_iops,
            "ssd_bps": self.args.ssd_bps,
            "mem_fraction": self.args.mem_fraction,
            "traces": self.args.trace_names,
            "cgroup": "v%d" % self.throttle.version,
            "loop_direct_io": {t.name: t.direct_io for t in self.tiers},
            "kernel": platform.release(),
            "qemu": qemu,
            "cpus": os.cpu_count(),
            "elapsed_s": elapsed,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "workdir": self.work,
            "pools": ["%s-%s-%s" % (self.tag, w.name, c) for w in self.workloads
                      for c, _ in CONFIGS] + [self.tag + "-reflink"],
            "cgroup_path": self.throttle.path,
            "memory_cgroup_path": self.memory.path,
            "ram_dir": self.ram,
        }


# --- helpers ---------------------------------------------------------------

def replay_argv(commands, path, cache="none", copy_on_read=False):
    """qemu-io replaying the trace @commands on the image @path: read-only
    for a storm, or with copy-on-read (-C) for the learner's boot, whose
    reads fill its overlay (that is how the hot set is learnt)."""
    mode = "-C" if copy_on_read else "-r"
    return ["qemu-io", mode, "-t", cache, "-f", "qcow2"] + list(commands) + [path]


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


def same_file(a, b):
    """Whether @a and @b are one file, or both None: a hot replica backs
    onto its template's file under the name the pool keeps the version by
    (PRIMARY/.stormpool-versions/TEMPLATE/IDENTITY), a hard link."""
    if not a or not b:
        return not a and not b
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_under(path, directory):
    return bool(path) and os.path.realpath(path).startswith(os.path.realpath(directory) + "/")


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def run_at(configs, config, n):
    for run in configs.get(config, {}).get("runs", []):
        if run["n"] == n:
            return run
    return None


def evaluate_targets(results, ns):
    n = TARGET_N if TARGET_N in ns else max(ns)
    targets = []

    def add(name, ok, detail):
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        targets.append({"name": name, "status": status, "detail": detail})

    for trace_name, tr in results["traces"].items():
        configs = tr["configs"]
        copy_targets(add, trace_name, configs, n)
        hot_targets(add, trace_name, configs, n)
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


def copy_targets(add, trace_name, configs, n):
    copy, none = run_at(configs, "copy", n), run_at(configs, "none", n)
    skip = configs.get("copy", {}).get("status", "not run")
    prefix = "%s, copy N=%d: " % (trace_name, n)
    if copy is None:
        add(prefix + "zero primary-tier reads during the storm", None, skip)
        add(prefix + "makespan >= 5x better than none", None, skip)
    else:
        add(prefix + "zero primary-tier reads during the storm",
            copy["hdd_reads"] == 0, "%d reads, %d bytes from the HDD"
            % (copy["hdd_reads"], copy["hdd_bytes"]))
        speedup = none["makespan"] / copy["makespan"]
        add(prefix + "makespan >= 5x better than none", speedup >= 5,
            "none %.2f s / copy %.2f s = %.1fx" % (none["makespan"], copy["makespan"], speedup))
    replica = configs.get("copy", {}).get("replica")
    name = "%s: replica creation >= 80%% of cp --sparse=always throughput" % trace_name
    if replica is None:
        add(name, None, skip)
    else:
        add(name, replica["ratio"] >= 0.8,
            "replica %.0f MB/s, cp %.0f MB/s: %.0f%%" % (replica["replica_MBps"],
                                                       replica["cp_MBps"], 100 * replica["ratio"]))


def hot_targets(add, trace_name, configs, n):
    """The issue's targets for hot replicas and the RAM tier."""
    ram, floor = run_at(configs, "hot-ram", n), run_at(configs, "floor", n)
    warm, pressed = run_at(configs, "hdd-wb", n), run_at(configs, "hdd-wb-mem", n)
    prefix = "%s, hot in RAM N=%d: " % (trace_name, n)
    missing = None if ram else configs.get("hot-ram", {}).get("status", "not run")

    def compare(name, other, test, detail):
        if missing or other is None:
            add(prefix + name, None, missing or "baseline not run")
        else:
            add(prefix + name, test(ram["makespan"], other["makespan"]),
                detail % (ram["makespan"], other["makespan"]))

    compare("makespan no worse than the warm page cache's", warm, lambda a, b: a <= b,
            "hot-ram %.2f s, hdd-wb %.2f s")
    compare("within 1.3x of the CPU floor", floor, lambda a, b: a <= 1.3 * b,
            "hot-ram %.2f s, floor %.2f s")
    compare(">= 5x better than the page cache under memory pressure", pressed,
            lambda a, b: 5 * a <= b, "hot-ram %.2f s, hdd-wb-mem %.2f s")
    if missing:
        add(prefix + "zero primary-tier reads during the storm", None, missing)
        add(prefix + "no template data read from the primary tier", None, missing)
    else:
        add(prefix + "zero primary-tier reads during the storm", ram["hdd_bytes"] == 0,
            "%d reads, %d bytes from the HDD" % (ram["hdd_reads"], ram["hdd_bytes"]))
        add(prefix + "no template data read from the primary tier",
            ram["hdd_reads"] <= ram["open_hdd_reads"],
            "the storm read %d times (%d bytes) from the HDD; only opening the same chains, "
            "%d times (%d bytes): the template's qcow2 header and tables" % (
                ram["hdd_reads"], ram["hdd_bytes"], ram["open_hdd_reads"],
                ram["open_hdd_bytes"]))
    hot = configs.get("hot", {})
    replica, copy = hot.get("replica"), configs.get("copy", {}).get("replica")
    name = "%s: hot replica size <= 1.25x the trace's distinct bytes" % trace_name
    if replica is None:
        add(name, None, hot.get("status", "not run"))
    else:
        ratio = replica["replica_allocated"] / replica["distinct_bytes"]
        add(name, ratio <= 1.25, "%.1f MiB allocated / %.1f MiB distinct = %.2fx"
            % (replica["replica_allocated"] / MiB, replica["distinct_bytes"] / MiB, ratio))
    name = "%s, hot: new template to first storm-proof instance <= 1/10 of copy's" % trace_name
    if replica is None or copy is None:
        add(name, None, hot.get("status", "copy not run"))
    else:
        ratio = replica["storm_proof_after_s"] / copy["storm_proof_after_s"]
        add(name, ratio <= 0.1, "hot %.2f s (learning boot %.2f s + refresh %.2f s + first "
            "instance %.2f s), copy %.2f s: %.2f" % (
                replica["storm_proof_after_s"], replica["learning_boot_s"],
                replica["refresh_s"], replica["first_vol_create_s"],
                copy["storm_proof_after_s"], ratio))
    on_ssd, copy_run = run_at(configs, "hot", n), run_at(configs, "copy", n)
    name = "%s, hot on the SSD tier N=%d: makespan within 1.2x of copy's" % (trace_name, n)
    if on_ssd is None or copy_run is None:
        add(name, None, hot.get("status", "copy not run"))
    else:
        add(name, on_ssd["makespan"] <= 1.2 * copy_run["makespan"], "hot %.2f s, copy %.2f s"
            % (on_ssd["makespan"], copy_run["makespan"]))


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
    for tool in ("qemu-io", "qemu-img", "qemu-system-x86_64", "virsh", "losetup", "mkfs.ext4",
                 "blockdev"):
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
