"""A lab of three hosts on one template store: what the store serves and
what a desktop's move costs, stormpool against what an admin would run
without it.

Run by `make bench-cluster` (bench/bench-cluster) through tools/cluster-env:
three hosts (hosta, hostb, hostc) with their own daemons and local tier,
and the template store, a GlusterFS volume whose server's network side is
throttled to --store-mib MiB/s (default 100, one HDD's sequential rate) for
every host together. Every byte the store serves crosses its bridge: the
store's bytes are the transmit counters of the server's port towards each
host, read before and after each phase, with every page cache dropped
before it.

The template is the boot storm's (bench/bootstorm/trace.py: 2 GiB, its
data laid out like an installed system; --quick: the 128 MiB profile) and
the trace is its boot: the reads, replayed by qemu-io with cache=none.

  new template   one template arrives in the store; for each policy, the
                 bytes each host reads from the store until it can start a
                 desktop that never reads the template again:
                   copy  prepare='eager': each host copies the template
                   hot   one host boots an instance once with copy-on-read,
                         its refresh learns and publishes the hot set, the
                         others build their hot replicas from it
  storm          --desktops N (default 20) desktops per host, on instances
                 of the template, boot at once on all three hosts: the
                 store's bytes and the makespan, for none (every desktop
                 reads the template in the store: the layout of a dir pool
                 on shared storage with local overlays), copy and hot. The
                 same storm of image opens without a read is measured too:
                 what QEMU reads of the images' metadata, so that the
                 template's data read is what is left.
  migration      a desktop (--own MiB of its own data, default 50) on a
                 template of --template-gib GiB full of data (default 2),
                 prepared on every host (copy, eager), moved from hosta by
                 virsh migrate --live --persistent --undefinesource
                 --copy-storage-inc, against the same desktop moved by
                 --copy-storage-all: the disk bytes libvirt's job reports,
                 the bytes the source host sent, and the time.

Prints a table per phase and a PASS/FAIL line per target of issue 21
(README); --json FILE writes every figure. Exit status 1 if a target
fails or the run breaks.
"""

import argparse
import json
import os
import sys
import threading
import time

import libvirt

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "cluster"))
sys.path.insert(0, os.path.join(TOP, "bench", "bootstorm"))
import cluster as cl  # noqa: E402
import trace  # noqa: E402
from bootstorm import replay_argv  # noqa: E402
from guest import distinct_bytes  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
HOSTS = cl.HOSTS
SOURCE = os.path.join(cl.TEMPLATES, "spb-source")
REPLAY = os.path.join(TOP, "bench", "cluster_replay.py")
OWN_OFFSET = 512 * MiB
# The trace's smallest read: the store's bytes beyond the image opens' that
# are fewer than this are the file system's own chatter (GlusterFS pings
# its clients every few seconds), not a read of the template.
SMALLEST_READ = 4096
MIGRATE_ALL = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST |
               libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_NON_SHARED_DISK)


def log(msg):
    print("bench-cluster: " + msg, flush=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/bench-cluster", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--desktops", type=int, default=20, help="desktops per host in the storm")
    ap.add_argument("--store-mib", type=int, default=100,
                    help="the store's throttle, MiB/s for all hosts together")
    ap.add_argument("--own", type=int, default=50, help="MiB of the moved desktop's own data")
    ap.add_argument("--template-gib", type=float, default=2,
                    help="GiB of data of the moved desktop's template")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: the 128 MiB profile, 2 desktops per host, "
                    "8 MiB moved on a 256 MiB template")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.desktops, args.own, args.template_gib = 2, 8, 0.25
    return args


def with_c(commands):
    """qemu-io's arguments for @commands: -c before each."""
    return [arg for command in commands for arg in ("-c", command)]


def drop_caches():
    """Nothing of the store stays in any host's (one kernel's) page cache."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def parallel(func, items):
    """func(item) for every item at once; their results, in order."""
    results, errors = [None] * len(items), []

    def one(i):
        try:
            results[i] = func(items[i])
        except BaseException as e:          # re-raised below, in this thread
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Store:
    """The GlusterFS server's side of the lab's network: its bridge (the
    throttle) and its port towards each host (the bytes it served)."""

    def __init__(self, state):
        with open(os.path.join(state, "server.pid")) as f:
            self.pid = f.read().strip()

    def net(self, *argv, check=True):
        return cl.run(["nsenter", "--target", self.pid, "--net", "--"] + list(argv),
                      check=check)[1]

    def sent(self):
        """{host: bytes the server has sent to it}."""
        return {h: tx_bytes(self.net("ip", "-json", "-stats", "link", "show", "dev", "v" + h))
                for h in HOSTS}

    def throttle(self, mib_s):
        self.net("tc", "qdisc", "replace", "dev", "br0", "root", "tbf", "rate",
                 "%dmbit" % (mib_s * 8 * 1.048576), "burst", "1mb", "latency", "500ms")

    def unthrottle(self):
        self.net("tc", "qdisc", "del", "dev", "br0", "root", check=False)


def tx_bytes(ip_json):
    """The bytes sent through the link `ip -json -stats link show` shows
    (sysfs is not the namespace's: its mount is the machine's)."""
    return json.loads(ip_json)[0]["stats64"]["tx"]["bytes"]


def host_sent(host):
    return tx_bytes(host.sh("ip", "-json", "-stats", "link", "show", "dev", "eth0")[1])


def delta(before, after):
    return {k: after[k] - before[k] for k in before}


class Bench:
    def __init__(self, args, hosts):
        self.args = args
        self.hosts = hosts
        self.store = Store(os.environ["CLUSTER_STATE"])
        self.profile = trace.QUICK if args.quick else trace.FULL
        reads = trace.boot_trace(self.profile)
        self.commands = trace.read_commands(reads)
        self.distinct = distinct_bytes([(o, n) for _, o, n in reads])
        self.labs = []
        # the baseline's stock dir pools, removed like a lab
        self.dir_lab = cl.Lab("spb-dir", hosts)
        self.results = {"profile": self.profile.name, "distinct_bytes": self.distinct,
                        "desktops_per_host": args.desktops, "store_mib_s": args.store_mib}

    # --- the lab ---------------------------------------------------------

    def lab(self, config, replica):
        """The pool spb-CONFIG on every host, with the template boot.qcow2
        (a hard link of the one written once), listed by every host."""
        lab = cl.define_lab("spb-" + config, self.hosts, replica)
        self.labs.append(lab)
        a = self.hosts["hosta"]
        a.sh("ln", os.path.join(SOURCE, "boot.qcow2"), os.path.join(lab.primary, "boot.qcow2"))
        return lab

    def write_templates(self):
        a = self.hosts["hosta"]
        a.sh("rm", "-rf", SOURCE)
        a.sh("mkdir", "-p", SOURCE)
        start = time.monotonic()
        boot = os.path.join(SOURCE, "boot.qcow2")
        a.sh("qemu-img", "create", "-q", "-f", "qcow2", boot, str(self.profile.virtual_size))
        argv = ["qemu-io", "-f", "qcow2"]
        for command in trace.write_commands(self.profile):
            argv += ["-c", command]
        a.sh(*(argv + [boot]), timeout=1800)
        desk = os.path.join(SOURCE, "desk.qcow2")
        size = int(self.args.template_gib * GiB)
        a.sh("qemu-img", "create", "-q", "-f", "qcow2", desk, str(max(size, 2 * GiB)))
        argv = ["qemu-io", "-f", "qcow2"]
        for offset in range(0, size, 64 * MiB):
            argv += ["-c", "write -q -P 0x%02x %d %d" % (offset // (64 * MiB) % 250 + 1, offset,
                                                         min(64 * MiB, size - offset))]
        a.sh(*(argv + [desk]), timeout=1800)
        log("templates written in %.0f s: boot.qcow2 (%s profile), desk.qcow2 (%.2f GiB of data)"
            % (time.monotonic() - start, self.profile.name, size / GiB))

    def refresh_all(self, lab, hosts=HOSTS):
        parallel(lab.refresh, list(hosts))

    def instance(self, lab, host, name, template="boot.qcow2", size=None):
        pool = lab.pool(host)
        backing = pool.storageVolLookupByName(template).path()
        xml = cl.volume_xml(name, size or self.profile.virtual_size, backing)
        return pool.createXML(xml, 0).path()

    # --- a new template --------------------------------------------------

    def new_template_copy(self):
        lab = self.lab("copy", "policy='copy' prepare='eager'")
        drop_caches()
        before, start = self.store.sent(), time.monotonic()
        self.refresh_all(lab)
        served = delta(before, self.store.sent())
        return lab, {"policy": "copy", "served": served, "seconds": time.monotonic() - start}

    def new_template_hot(self):
        lab = self.lab("hot", "policy='hot'")
        self.refresh_all(lab)
        a = self.hosts["hosta"]
        drop_caches()
        before, start = self.store.sent(), time.monotonic()
        learner = self.instance(lab, "hosta", "learner.qcow2")
        # cache=writeback: what libvirt gives a disk without a cache mode,
        # as stormpool(7)'s learning guest has
        a.sh(*replay_argv(with_c(self.commands), learner, "writeback", copy_on_read=True),
             timeout=1800)
        lab.refresh("hosta")
        self.refresh_all(lab, HOSTS[1:])
        served = delta(before, self.store.sent())
        lab.vol("hosta", "learner.qcow2").delete(0)
        return lab, {"policy": "hot", "served": served, "seconds": time.monotonic() - start}

    # --- the storm -------------------------------------------------------

    def storm(self, lab, commands):
        """Every host's desktops replay @commands at once: (makespan,
        {host: bytes the store served})."""
        for h in HOSTS:
            with open(self.hosts[h].ssd("spb-trace.txt"), "w") as f:
                f.write("\n".join(commands) + "\n")
        paths = {h: [os.path.join(lab.secondary, "pc%02d.qcow2" % i)
                     for i in range(1, self.args.desktops + 1)] for h in HOSTS}
        drop_caches()
        before = self.store.sent()

        def boot(h):
            out = self.hosts[h].sh("/usr/bin/python3", REPLAY,
                                   os.path.join(cl.SSD, "spb-trace.txt"), *paths[h],
                                   timeout=1800)[1]
            return json.loads(out)["makespan"]
        makespans = parallel(boot, list(HOSTS))
        return max(makespans), delta(before, self.store.sent())

    def run_storm(self, lab, config):
        for h in HOSTS:
            for i in range(1, self.args.desktops + 1):
                path = self.instance(lab, h, "pc%02d.qcow2" % i)
                if config != "none" and os.path.dirname(self.backing(h, path)) == lab.primary:
                    raise RuntimeError("%s: %s backs onto the template itself" % (config, path))
        makespan, served = self.storm(lab, self.commands)
        opens = self.storm(lab, [])[1]
        result = {"makespan": makespan, "served": served, "opens_served": opens,
                  "template_data": sum(served.values()) - sum(opens.values())}
        log("storm %-4s %d x %d desktops: makespan %6.2f s, store served %8.1f MiB "
            "(image opens alone %.1f MiB)" % (config, len(HOSTS), self.args.desktops, makespan,
                                              sum(served.values()) / MiB,
                                              sum(opens.values()) / MiB))
        return result

    def backing(self, host, path):
        return cl.image_info(self.hosts[host], path)["backing-filename"]

    # --- migration -------------------------------------------------------

    def desktop(self, pool, name, path):
        """The guest @name on hosta, on the volume @path of @pool, which
        gets --own MiB of its own data first."""
        a = self.hosts["hosta"]
        own = self.args.own * MiB
        a.sh("qemu-io", "-f", "qcow2", "-c", "write -q -P 0x7e %d %d" % (OWN_OFFSET, own), path)
        conn = cl.qemu_conn(self.hosts, "hosta")
        conn.defineXML(cl.guest_xml(name, pool, os.path.basename(path))).create()
        conn.close()

    def dir_pools(self, template):
        """The baseline's pools: a stock dir pool spb-dir in the local tier
        of hosta and hostc, and on hosta the desktop's overlay of the
        template in the store, as an admin lays it out without stormpool.
        --copy-storage-all is what moves such a desktop: libvirt
        pre-creates a whole-disk volume on the destination."""
        path = os.path.join(cl.SSD, "spb-dir")
        xml = """<pool type='dir'><name>spb-dir</name>
  <target><path>%s</path></target></pool>""" % path
        for h in ("hosta", "hostc"):
            pool = self.dir_lab.conn(h).storagePoolDefineXML(xml, 0)
            pool.build(0)
            pool.create(0)
        pool = self.dir_lab.pool("hosta")
        return pool.createXML(cl.volume_xml("spb-all.qcow2", 2 * GiB, template), 0).path()

    def move(self, name, destination, flags):
        """Migrate @name from hosta, polling the source's job statistics
        (the last before the end has the disks' final figures: the mirror
        is complete before the memory's last pass)."""
        stats, done = {}, threading.Event()
        conn = cl.qemu_conn(self.hosts, "hosta")
        dom = conn.lookupByName(name)

        def poll():
            while not done.is_set():
                try:
                    s = dom.jobStats()
                except libvirt.libvirtError:
                    s = {}
                for key in ("disk_processed", "disk_total", "memory_processed"):
                    if key in s:
                        stats[key] = max(stats.get(key, 0), s[key])
                time.sleep(0.05)
        poller = threading.Thread(target=poll)
        a = self.hosts["hosta"]
        sent, start = host_sent(a), time.monotonic()
        poller.start()
        try:
            cl.migrate(self.hosts, name, "hosta", destination, flags=flags)
        finally:
            done.set()
            poller.join()
            conn.close()
        return {"seconds": time.monotonic() - start, "sent": host_sent(a) - sent,
                "disk_bytes": stats.get("disk_processed"), "memory_bytes": stats.get("memory_processed")}

    def run_migration(self):
        lab = self.lab("move", "policy='copy' prepare='eager'")
        a = self.hosts["hosta"]
        a.sh("ln", os.path.join(SOURCE, "desk.qcow2"), os.path.join(lab.primary, "desk.qcow2"))
        self.refresh_all(lab)
        inc = self.instance(lab, "hosta", "spb-inc.qcow2", "desk.qcow2", 2 * GiB)
        self.desktop(lab.name, "spb-inc", inc)
        own = cl.own_data_bytes(a, inc)
        self.desktop("spb-dir", "spb-all", self.dir_pools(lab.vol("hosta", "desk.qcow2").path()))
        result = {"own_allocation": own,
                  "inc": self.move("spb-inc", "hostb", cl.MIGRATE_INC),
                  "all": self.move("spb-all", "hostc", MIGRATE_ALL)}
        moved = cl.own_data_bytes(self.hosts["hostb"], inc)
        if moved < own:
            raise RuntimeError("the moved instance holds %d bytes, not its %d" % (moved, own))
        result["moved_own"] = moved
        for mode in ("inc", "all"):
            r = result[mode]
            log("migration --copy-storage-%s: %.1f s, disk %s, sent by hosta %.1f MiB"
                % (mode, r["seconds"], "%.1f MiB" % (r["disk_bytes"] / MiB)
                   if r["disk_bytes"] is not None else "not reported", r["sent"] / MiB))
        return result

    def cleanup(self):
        for h in HOSTS:
            conn = cl.qemu_conn(self.hosts, h)
            for name in ("spb-inc", "spb-all"):
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
            conn.close()
        for lab in self.labs + [self.dir_lab]:
            lab.remove()
        self.hosts["hosta"].sh("rm", "-rf", SOURCE)
        for h in HOSTS:
            cl.run(["rm", "-f", self.hosts[h].ssd("spb-trace.txt")])
        self.store.unthrottle()

    # --- the whole run ---------------------------------------------------

    def run(self):
        self.store.throttle(self.args.store_mib)
        self.write_templates()
        labs, self.results["new_template"] = {}, {}
        for config, make in (("copy", self.new_template_copy), ("hot", self.new_template_hot)):
            labs[config], self.results["new_template"][config] = make()
            served = self.results["new_template"][config]["served"]
            log("new template, %-4s: store served %s MiB in all" % (
                config, " + ".join("%.1f" % (served[h] / MiB) for h in HOSTS)))
        labs["none"] = self.lab("none", "policy='none'")
        self.refresh_all(labs["none"])
        self.results["storm"] = {c: self.run_storm(labs[c], c) for c in ("none", "copy", "hot")}
        self.results["migration"] = self.run_migration()
        return self.results


def targets(r):
    """(name, ok, detail) per target of issue 21."""
    out = []
    d = r["distinct_bytes"]
    hot = sum(r["new_template"]["hot"]["served"].values())
    copy = sum(r["new_template"]["copy"]["served"].values())
    out.append(("new template on 3 hot hosts: store bytes <= 1.5x one boot's distinct bytes"
                " per host (the learning boot counted once)", hot / 3 <= 1.5 * d,
                "%.1f MiB in all, %.1f MiB per host; distinct bytes of one boot %.1f MiB; "
                "copy: %.1f MiB in all" % (hot / MiB, hot / 3 / MiB, d / MiB, copy / MiB)))
    for config in ("copy", "hot"):
        s = r["storm"][config]
        out.append(("%d x %d storm, %s: 0 bytes of template data from the store"
                    % (len(HOSTS), r["desktops_per_host"], config),
                    s["template_data"] < SMALLEST_READ,
                    "%.1f KiB served, %.1f KiB of them by the image opens alone"
                    % (sum(s["served"].values()) / 1024, sum(s["opens_served"].values()) / 1024)))
    m = r["migration"]
    inc, full = m["inc"], m["all"]
    disk = inc["disk_bytes"] if inc["disk_bytes"] is not None else inc["sent"]
    out.append(("migration: disk bytes sent <= 1.1x the instance's own allocation",
                disk <= 1.1 * m["own_allocation"],
                "%.1f MiB sent for %.1f MiB of own data" % (disk / MiB, m["own_allocation"] / MiB)))
    ratio = full["sent"] / inc["sent"]
    out.append(("migration: >= 10x fewer bytes than --copy-storage-all", ratio >= 10,
                "hosta sent %.1f MiB against %.1f MiB: %.1fx" % (inc["sent"] / MiB,
                                                                full["sent"] / MiB, ratio)))
    return out


def main(argv):
    args = parse_args(argv)
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    hosts = cl.cluster_hosts()
    bench = Bench(args, hosts)
    for lab_name in ("spb-copy", "spb-hot", "spb-none", "spb-move", "spb-dir"):
        cl.Lab(lab_name, hosts).remove()        # left by an interrupted run
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    status = 0
    results["targets"] = []
    for name, ok, detail in targets(results):
        print("%s  %s: %s" % ("PASS" if ok else "FAIL", name, detail))
        results["targets"].append({"target": name, "ok": ok, "detail": detail})
        status |= 0 if ok else 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
