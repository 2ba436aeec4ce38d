"""Instance creation and pool refresh: stormpool against libvirt's dir pool.

Run by `make bench-create` (bench/bench-create) through the private daemons.
All configurations are measured side by side in one run, on one file system,
through the libvirt API (python3-libvirt, storage:///system):

  stormpool   vol-create of a qcow2 instance backing directly onto the
              template (policy 'none': native writer, fdatasync, rename,
              fsync of the directory)
  dir+qemu-img  vol-create of a qcow2 overlay in a stock dir pool (libvirt
              runs qemu-img create)
  dir+copy    vol-clone of a template holding real data in a dir pool (a
              full copy, what "clone" means without overlays)

and pool-refresh of pools holding the instances just made.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import libvirt

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.join(TOP, "_build", "bench", "create")
STORAGED_LOG = os.path.join(os.environ["STORMPOOL_PREFIX"], "var", "log", "libvirt",
                            "virtstoraged.log")
GiB = 1024 ** 3


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def make_template(path, data_bytes):
    """A 20 GiB qcow2 template with @data_bytes of real data in it."""
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "20G")
    chunk = 64 * 1024 * 1024
    commands = []
    for offset in range(0, data_bytes, chunk):
        commands += ["-c", "write -P %d %d %d" % ((offset // chunk) % 250 + 1, offset,
                                                   min(chunk, data_bytes - offset))]
    if commands:
        run("qemu-io", "-f", "qcow2", *commands, path)


def define(conn, name, xml):
    """Define and start a pool, replacing one left by an interrupted run."""
    try:
        old = conn.storagePoolLookupByName(name)
        if old.isActive():
            old.destroy()
        old.undefine()
    except libvirt.libvirtError:
        pass
    pool = conn.storagePoolDefineXML(xml)
    pool.create()
    return pool


def instance_xml(name, backing):
    return ("<volume><name>%s</name><capacity unit='G'>20</capacity>"
            "<target><format type='qcow2'/></target>"
            "<backingStore><path>%s</path><format type='qcow2'/></backingStore>"
            "</volume>" % (name, backing))


def time_creates(pool, n, backing):
    os.sync()           # start from a clean journal: fdatasync pays for it
    times = []
    for i in range(n):
        xml = instance_xml("pc%05d.qcow2" % i, backing)
        start = time.perf_counter()
        pool.createXML(xml)
        times.append(time.perf_counter() - start)
    return times


def time_clones(pool, n, template_vol):
    times = []
    for i in range(n):
        xml = ("<volume><name>full%05d.qcow2</name><capacity unit='G'>20</capacity>"
               "<target><format type='qcow2'/></target></volume>" % i)
        start = time.perf_counter()
        pool.createXMLFrom(xml, template_vol)
        times.append(time.perf_counter() - start)
    return times


def log_size():
    try:
        return os.path.getsize(STORAGED_LOG)
    except OSError:
        return 0


def refresh_split(pool_name, since):
    """Medians of the backend's own refresh time and of the part of it in
    libvirt's virStoragePoolObjAddVol, from the module's log lines."""
    pattern = re.compile(r"refreshed stormpool pool '%s': \d+ volumes in ([\d.]+) ms, "
                         r"of which ([\d.]+) ms" % re.escape(pool_name))
    totals, adds = [], []
    try:
        with open(STORAGED_LOG, errors="replace") as f:
            f.seek(since)
            for line in f:
                m = pattern.search(line)
                if m:
                    totals.append(float(m.group(1)) / 1000)
                    adds.append(float(m.group(2)) / 1000)
    except OSError:
        pass
    if not totals:
        return None
    return statistics.median(totals), statistics.median(adds)


def time_refresh(pool, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        pool.refresh()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_api_round_trip(pool, repeat=1000):
    """One libvirt call that does no storage work (pool-info)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        pool.info()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_durable_file(directory, repeat=200):
    """The durability rule on its own, outside libvirt: a new file with the
    three small writes of a 64 KiB-cluster overlay, fdatasync, rename,
    fsync of the directory. The files are left for the final cleanup."""
    os.makedirs(directory)
    dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    block = b"\1" * 512
    times = []
    try:
        os.sync()
        for i in range(repeat):
            tmp, name = ".tmp-%05d" % i, "file%05d" % i
            start = time.perf_counter()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                         dir_fd=dirfd)
            os.ftruncate(fd, 196928)
            for offset in (0, 65536, 131072):
                os.pwrite(fd, block, offset)
            os.fdatasync(fd)
            os.close(fd)
            os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            os.fsync(dirfd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(dirfd)
    return statistics.median(times)


def empty_pool(pool, keep=()):
    for vol in pool.listAllVolumes():
        if vol.name() not in keep:
            vol.delete()


def ms(seconds):
    return "%.2f ms" % (seconds * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="100,1000",
                        help="instances per run (default 100,1000)")
    parser.add_argument("--copies", type=int, default=5,
                        help="full copies for the dir+copy baseline (default 5)")
    parser.add_argument("--template-data", type=int, default=1024,
                        help="MiB of real data in the template (default 1024)")
    parser.add_argument("--uri", default="storage:///system")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    template = os.path.join(ROOT, "win10.qcow2")
    print("making a template with %d MiB of data ..." % args.template_data, flush=True)
    make_template(template, args.template_data * 1024 * 1024)

    # Lookups of pools that do not exist are expected; keep them quiet.
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    conn = libvirt.open(args.uri)
    pools = []
    try:
        print("\nconnection %s, file system of %s" % (args.uri, ROOT))
        print("%-8s %-14s %-14s %-8s %-12s %-12s %-8s" %
              ("N", "stormpool", "dir+qemu-img", "ratio", "refresh sp", "refresh dir", "ratio"))
        results = []
        for n in counts:
            # Fresh pools for every N, and nothing deleted until the end:
            # ext4 gets slower at allocating inodes right after many
            # deletions, which would penalise whichever pool came second.
            base = os.path.join(ROOT, str(n))
            for d in ("hdd", "ssd", "dir"):
                os.makedirs(os.path.join(base, d))
            os.link(template, os.path.join(base, "hdd", "win10.qcow2"))
            os.link(template, os.path.join(base, "dir", "win10.qcow2"))
            sp = define(conn, "bench-stormpool-%d" % n,
                        "<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>"
                        "<name>bench-stormpool-%d</name><source><dir path='%s/hdd'/></source>"
                        "<target><path>%s/ssd</path></target>"
                        "<stormpool:replica policy='none'/></pool>" % (n, base, base))
            pools.append(sp)
            dp = define(conn, "bench-dir-%d" % n,
                        "<pool type='dir'><name>bench-dir-%d</name><target>"
                        "<path>%s/dir</path></target></pool>" % (n, base))
            pools.append(dp)

            sp_med = statistics.median(time_creates(sp, n, os.path.join(base, "hdd", "win10.qcow2")))
            dir_med = statistics.median(time_creates(dp, n, os.path.join(base, "dir", "win10.qcow2")))
            # Right after the creates every header is new to stormpool's
            # header cache (which does not trust files changed in the last
            # 2 s): the cold case. Then, once the files have settled, the
            # refresh of an unchanged pool, the common case.
            cold = (time_refresh(sp), time_refresh(dp))
            time.sleep(3)
            sp.refresh()
            mark = log_size()
            sp_ref = time_refresh(sp)
            split = refresh_split("bench-stormpool-%d" % n, mark)
            dir_ref = time_refresh(dp)
            results.append((n, sp_med, dir_med, sp_ref, dir_ref, split))
            print("%-8d %-14s %-14s %-8s %-12s %-12s %-8s" %
                  (n, ms(sp_med), ms(dir_med), "%.1fx" % (dir_med / sp_med),
                   ms(sp_ref), ms(dir_ref), "%.1fx" % (dir_ref / sp_ref)), flush=True)
            print("%-8s %-14s %-14s %-8s %-12s %-12s %-8s" %
                  ("  cold", "", "", "", ms(cold[0]), ms(cold[1]),
                   "%.1fx" % (cold[1] / cold[0])), flush=True)

        template_vol = pools[-1].storageVolLookupByName("win10.qcow2")
        copy_times = time_clones(pools[-1], args.copies, template_vol)
        copy_med = statistics.median(copy_times)
        print("\nfull copies (vol-clone in the dir pool, %d MiB of data, N=%d): median %s"
              % (args.template_data, args.copies, ms(copy_med)))
        for n, sp_med, _, _, _, _ in results:
            print("  stormpool instance vs full copy at N=%d: %.0fx faster"
                  % (n, copy_med / sp_med))

        n, sp_med, dir_med, sp_ref, dir_ref, split = results[-1]
        # What no backend can go below on this machine: the API call itself
        # and the durability the issue asks for.
        rpc = time_api_round_trip(pools[-2])
        durable = time_durable_file(os.path.join(ROOT, str(n), "floor"))
        print("\nfloor of one creation here, outside stormpool's code:")
        print("  libvirt API round trip (pool-info)                         %s" % ms(rpc))
        print("  new file, 3 writes, fdatasync, rename, fsync of directory  %s" % ms(durable))
        print("  sum %s: at best %.1fx the dir pool's %s; stormpool's own share %s"
              % (ms(rpc + durable), dir_med / (rpc + durable), ms(dir_med),
                 ms(max(sp_med - rpc - durable, 0))))
        if split:
            # Everything the client waits for outside the backend's callback
            # (the RPC, the driver's virStoragePoolObjClearVols, events) and
            # libvirt's virStoragePoolObjAddVol inside it: libvirt's own part.
            callback, add_vol = split
            libvirt_part = sp_ref - callback + add_vol
            print("\nfloor of a refresh of %d unchanged instances, from the module's log:" % n)
            print("  libvirt outside the backend (RPC, clearing the volume list)  %s"
                  % ms(sp_ref - callback))
            print("  libvirt's virStoragePoolObjAddVol, inside the backend       %s" % ms(add_vol))
            print("  sum %s: at best %.1fx the dir pool's %s; stormpool's own share %s"
                  % (ms(libvirt_part), dir_ref / libvirt_part, ms(dir_ref),
                     ms(callback - add_vol)))
        print()
        print("target creation >= 20x dir+qemu-img at N=%d: %.1fx %s"
              % (n, dir_med / sp_med, "PASS" if dir_med / sp_med >= 20 else "FAIL"))
        print("target refresh  >= 10x dir at N=%d:          %.1fx %s"
              % (n, dir_ref / sp_ref, "PASS" if dir_ref / sp_ref >= 10 else "FAIL"))
    finally:
        for pool in pools:
            try:
                empty_pool(pool, keep=("win10.qcow2",))
                empty_pool(pool)
                pool.destroy()
            except libvirt.libvirtError as exc:
                print("cleanup: %s" % exc, file=sys.stderr)
            pool.undefine()
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
