"""virt-clone of a desktop: stormpool against libvirt's dir pool.

Run by `make bench-clone` (bench/bench-clone) through the private daemons.
A desktop is a guest on a qcow2 overlay that holds --own MiB (default 50)
of data of its own and backs onto a template of --template GiB (default 2)
full of data. Both configurations hold the same chain on one file system
(the template is one file, hard-linked into both), and each guest's disk
is a <disk type='volume'> on its overlay:

  stormpool  the overlay is an instance in the secondary tier, backing onto
             the template of the primary tier (the default replica policy)
  dir        a stock dir pool holding the template and the overlay: linked
             clones as an admin lays them out without stormpool

Each round clones both desktops once, side by side (which one goes first
alternates), through virtinst in the benchmark's own process (Cloner, the
code of virt-clone and of virt-manager's Clone dialog) from the patched
virt-manager tree of the virt-manager that goes with LIBVIRT: for a dir
pool it does what stock virt-clone does (the volume is copied, flattened,
by libvirt's qemu-img convert). Measured per clone: the time of
Cloner.start_duplicate() (the volume's copy and the guest's definition),
the time of an fsync of the new volume and its directory that follows
(until the clone is on disk), the bytes written on behalf of the clone
(write_bytes of virtstoraged and virtqemud and of the processes they
reaped, qemu-img, and of this process) and the bytes the new volume
allocates. Then once each, virt-clone --auto-clone as a user runs it, whose
own start (Python, virtinst, the lookups: seconds on a loaded machine) is
the same for both pools. Each clone is checked (what it backs onto, its
own data) and deleted before the next.

At the end the floor of a clone on this file system: copying the overlay
file by hand (cp --sparse=always) and its fsync, what no pool can beat.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import libvirt

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import stormpool_client as sp  # noqa: E402

ROOT = os.path.join(TOP, "_build", "bench", "clone")
MiB = 1024 * 1024
GiB = 1024 * MiB
OWN_OFFSET = 512 * MiB
SP_POOL = "spbench-clone-stormpool"
DIR_POOL = "spbench-clone-dir"


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def make_template(path, size):
    """A qcow2 template of @size bytes, every byte data (a pattern per
    64 MiB, so that nothing reads as zeros)."""
    run("qemu-img", "create", "-q", "-f", "qcow2", path, str(size))
    chunk = 64 * MiB
    commands = []
    for offset in range(0, size, chunk):
        commands += ["-c", "write -q -P %d %d %d" % ((offset // chunk) % 250 + 1, offset,
                                                      min(chunk, size - offset))]
    run("qemu-io", "-f", "qcow2", *commands, path)


def write_own_data(path, data):
    run("qemu-io", "-f", "qcow2", "-c",
        "write -q -s %s %d %d" % (data, OWN_OFFSET, os.path.getsize(data)), path)


def define_pool(conn, name, xml):
    """Define, build and start a pool, replacing one left by an interrupted run."""
    remove_pool(conn, name)
    pool = conn.storagePoolDefineXML(xml)
    pool.build(0)
    pool.create(0)
    return pool


def remove_pool(conn, name):
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if pool.isActive():
        pool.destroy()
    pool.undefine()


def define_guest(conn, name, pool, volume):
    sp.remove_domain(name)
    conn.defineXML(sp.firmware_guest_xml(name, pool, volume))


def daemon_pids():
    piddir = os.path.join(sp.prefix(), "var", "run")
    pids = []
    for daemon in ("virtstoraged", "virtqemud"):
        with open(os.path.join(piddir, daemon + ".pid")) as f:
            pids.append(int(f.read().strip()))
    return pids


def written(pids):
    """write_bytes of @pids and of this process (each with the children it
    reaped), minus what was cancelled by truncation before writeback."""
    total = 0
    for pid in pids + [os.getpid()]:
        with open("/proc/%d/io" % pid) as f:
            fields = dict(line.split(":") for line in f)
        total += int(fields["write_bytes"]) - int(fields["cancelled_write_bytes"])
    return total


def fsync_file(path):
    """@path and its directory on disk (the time an admin's sync after the
    clone would take for it, without the other writers of this machine)."""
    for p, flags in ((path, os.O_RDONLY), (os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(p, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def vol_backing(vol):
    return ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")


def clone_once(conn, pool, guest, clone, pids):
    """virt-clone --auto-clone of @guest as @clone: (seconds of virt-clone,
    seconds of the sync after it, bytes written, bytes allocated by the new
    volume, the new volume)."""
    os.sync()
    before = written(pids)
    start = time.perf_counter()
    sp.virt_clone("--original", guest, "--name", clone, "--auto-clone")
    return clone_done(pool, pids, before, start)


def clone_done(pool, pids, before, start):
    """What clone_once() returns, once the clone begun at @start (with
    @before bytes written by @pids) has returned: its time, the fsync of
    the new volume, bytes written and allocated, the volume."""
    elapsed = time.perf_counter() - start
    vol = pool.storageVolLookupByName("pc01-clone.qcow2")
    start = time.perf_counter()
    fsync_file(vol.path())
    synced = time.perf_counter() - start
    nbytes = written(pids) - before
    allocated = os.stat(vol.path()).st_blocks * 512
    return elapsed, synced, nbytes, allocated, vol


def clone_in_process(vconn, pool, guest, clone, pids):
    """The same clone through virtinst in this process (the code of
    virt-clone and of virt-manager's Clone dialog), without the program's
    start: Cloner.prepare(), then start_duplicate() and the fsync of the
    new volume timed. Returns what clone_once() does."""
    from virtinst import Cloner
    cloner = Cloner(vconn, src_name=guest)
    cloner.set_clone_name(clone)
    cloner.prepare()
    os.sync()
    before = written(pids)
    start = time.perf_counter()
    cloner.start_duplicate(None)
    return clone_done(pool, pids, before, start)


def check_clone(kind, vol, original, own):
    """The stormpool clone is an instance backing onto what the desktop
    backs onto, with the desktop's own data only; the dir pool's is a
    flattened copy."""
    info = sp.qemu_img_info(vol.path())
    if kind == "stormpool":
        assert vol_backing(vol) == vol_backing(original), vol.XMLDesc(0)
        assert info.get("backing-filename") == sp.backing_of(original.path()), info
        assert info["actual-size"] < own + 8 * MiB, info
    else:
        assert "backing-filename" not in info, info


def floor_copy(src, directory, repeat=3):
    """The overlay copied by hand, then synced: (seconds, bytes allocated)."""
    times, allocated = [], 0
    for i in range(repeat):
        dest = os.path.join(directory, "copy%d.qcow2" % i)
        os.sync()
        start = time.perf_counter()
        run("cp", "--sparse=always", src, dest)
        fsync_file(dest)
        times.append(time.perf_counter() - start)
        allocated = os.stat(dest).st_blocks * 512
        os.unlink(dest)
    return statistics.median(times), allocated


def mib(n):
    return "%.1f MiB" % (n / MiB)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3,
                        help="clones of each desktop (default 3)")
    parser.add_argument("--template", type=float, default=2,
                        help="GiB of data in the template (default 2)")
    parser.add_argument("--own", type=int, default=50,
                        help="MiB of the desktop's own data (default 50)")
    args = parser.parse_args()
    template_size = int(args.template * GiB)
    own = args.own * MiB
    if OWN_OFFSET + own > template_size:
        parser.error("the desktop's own data must fit in the template")

    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    hdd, ssd, dirpath = (os.path.join(ROOT, d) for d in ("hdd", "ssd", "dir"))
    for d in (hdd, dirpath):
        os.makedirs(d)
    template = os.path.join(hdd, "win10.qcow2")
    print("making a template with %s of data and %s of a desktop's own ..."
          % (mib(template_size), mib(own)), flush=True)
    start = time.perf_counter()
    make_template(template, template_size)
    print("  made in %.1fs" % (time.perf_counter() - start), flush=True)
    os.link(template, os.path.join(dirpath, "win10.qcow2"))
    data = os.path.join(ROOT, "own-data")
    with open(data, "wb") as f:
        f.write(os.urandom(own))

    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    conn = sp.connect()
    guests = {"stormpool": "spbench-clone-sp", "dir": "spbench-clone-dir"}
    try:
        pools = {
            "stormpool": define_pool(conn, SP_POOL, sp.pool_xml(SP_POOL, hdd, ssd)),
            "dir": define_pool(conn, DIR_POOL,
                               "<pool type='dir'><name>%s</name><target><path>%s</path>"
                               "</target></pool>" % (DIR_POOL, dirpath)),
        }
        for kind, pool in pools.items():
            base = pool.storageVolLookupByName("win10.qcow2").path()
            pool.createXML(sp.volume_xml("pc01.qcow2", template_size, backing=base), 0)
            original = pool.storageVolLookupByName("pc01.qcow2")
            write_own_data(original.path(), data)
            pool.refresh(0)
            define_guest(conn, guests[kind], pool.name(), "pc01.qcow2")
        pids = daemon_pids()

        sys.path.insert(0, sp.virt_manager_tree())
        from virtinst import VirtinstConnection
        vconn = VirtinstConnection("qemu:///system")
        vconn.open(None, None)

        def one(kind, how):
            """A clone of the desktop in the pool @kind by virt-clone (@how
            "cli") or by virtinst in this process ("virtinst"), checked and
            deleted: (time, fsync time, bytes written, bytes allocated)."""
            pool = pools[kind]
            clone = guests[kind] + "-clone"
            try:
                if how == "cli":
                    result = clone_once(conn, pool, guests[kind], clone, pids)
                else:
                    result = clone_in_process(vconn, pool, guests[kind], clone, pids)
                vol = result[-1]
                check_clone(kind, vol, pool.storageVolLookupByName("pc01.qcow2"), own)
                vol.delete(0)
            finally:
                sp.remove_domain(clone)
            return result[:-1]

        results = {"stormpool": [], "dir": []}
        print("\nthe clone by virtinst (%s, libvirt %s), in this process: "
              "Cloner.start_duplicate()" % (
                  os.path.relpath(sp.virt_manager_tree(), TOP), os.environ.get("LIBVIRT", "")))
        header = "%-6s %-10s %10s %10s %12s %12s" % ("round", "pool", "time", "fsync",
                                                   "written", "allocated")
        row = "%-6s %-10s %9.2fs %9.2fs %12s %12s"
        print(header)
        for i in range(args.rounds):
            order = ["stormpool", "dir"] if i % 2 == 0 else ["dir", "stormpool"]
            for kind in order:
                r = one(kind, "virtinst")
                results[kind].append(r)
                print(row % (i + 1, kind, r[0], r[1], mib(r[2]), mib(r[3])), flush=True)
        print("\nvirt-clone --auto-clone, the whole program as a user runs it, once:")
        print(header)
        cli = {}
        for kind in ("dir", "stormpool"):
            cli[kind] = one(kind, "cli")
            r = cli[kind]
            print(row % ("", kind, r[0], r[1], mib(r[2]), mib(r[3])), flush=True)

        floor_time, floor_alloc = floor_copy(
            pools["stormpool"].storageVolLookupByName("pc01.qcow2").path(), ssd)

        def med(kind, field):
            return statistics.median(r[field] for r in results[kind])
        total = {k: med(k, 0) + med(k, 1) for k in results}
        print("\nmedians of %d rounds (virtinst):" % args.rounds)
        print("%-10s %10s %12s %12s" % ("pool", "on disk", "written", "allocated"))
        for kind in ("stormpool", "dir"):
            print("%-10s %9.2fs %12s %12s" % (kind, total[kind], mib(med(kind, 2)),
                                              mib(med(kind, 3))))
        cli_total = {k: cli[k][0] + cli[k][1] for k in cli}
        print("\nratios, dir pool / stormpool:")
        print("  clone until on disk (virtinst)       %6.1fx" % (total["dir"] / total["stormpool"]))
        print("  virt-clone until on disk             %6.1fx  (%.2fs / %.2fs: the program's "
              "own start is most of stormpool's)" % (cli_total["dir"] / cli_total["stormpool"],
                                                     cli_total["dir"], cli_total["stormpool"]))
        print("  bytes written                        %6.1fx" % (med("dir", 2) / med("stormpool", 2)))
        print("  bytes allocated by the clone         %6.1fx" % (med("dir", 3) / med("stormpool", 3)))
        print("\nfloor here: cp --sparse=always of the overlay and fsync, %.2fs, %s allocated;"
              % (floor_time, mib(floor_alloc)))
        print("  stormpool's clone until on disk (virtinst), with libvirt's calls, the "
              "pool's checks and durable rename and the guest's definition: %.2fs, %.1fx "
              "the floor" % (total["stormpool"], total["stormpool"] / floor_time))
        vconn.close()
    finally:
        for kind, name in guests.items():
            sp.remove_domain(name + "-clone")
            sp.remove_domain(name)
        for name in (SP_POOL, DIR_POOL):
            try:
                pool = conn.storagePoolLookupByName(name)
                if pool.isActive():
                    for vol in sorted(pool.listAllVolumes(), key=lambda v: v.name() == "win10.qcow2"):
                        vol.delete(0)
            except libvirt.libvirtError as exc:
                print("cleanup: %s" % exc, file=sys.stderr)
            remove_pool(conn, name)
        conn.close()
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
