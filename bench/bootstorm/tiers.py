"""Loop-device filesystems as storage tiers, their I/O counters, the blkio
throttle, and the machine-wide cache drop. Every resource made here is
registered with a Cleanup, which undoes them in reverse order."""

import os
import subprocess
import time

SECTOR = 512


def sh(*argv, check=True, capture=True):
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(argv), proc.returncode,
                                                     proc.stdout or "", proc.stderr or ""))
    return proc.stdout if capture else ""


class Cleanup:
    """A stack of undo actions; run() calls every one, newest first, even if
    some fail, and reports the failures."""

    def __init__(self):
        self.actions = []

    def push(self, description, func, *args):
        self.actions.append((description, func, args))

    def run(self):
        errors = []
        while self.actions:
            description, func, args = self.actions.pop()
            try:
                func(*args)
            except Exception as exc:            # keep tearing down
                errors.append("%s: %s" % (description, exc))
        return errors


class Tier:
    """An ext4 (or xfs) filesystem on a loop device over a sparse image file."""

    def __init__(self, name, image, mountpoint, size, fstype, cleanup):
        self.name = name
        self.image = image
        self.mountpoint = mountpoint
        os.makedirs(os.path.dirname(image), exist_ok=True)
        with open(image, "wb") as f:
            f.truncate(size)
        cleanup.push("remove %s" % image, os.unlink, image)
        if fstype == "xfs":
            sh("mkfs.xfs", "-q", "-f", "-m", "reflink=1", image)
        else:
            sh("mkfs.ext4", "-q", "-F", "-E",
               "lazy_itable_init=0,lazy_journal_init=0,nodiscard", image)
        # direct-io: the loop device reads the image with O_DIRECT too, so the
        # host's page cache never serves a tier (falls back quietly if refused).
        self.device = sh("losetup", "--find", "--show", "--direct-io=on", image).strip()
        cleanup.push("losetup -d %s" % self.device, sh, "losetup", "-d", self.device)
        self.sysfs = "/sys/block/%s" % os.path.basename(self.device)
        with open(os.path.join(self.sysfs, "dev")) as f:
            self.majmin = f.read().strip()
        os.makedirs(mountpoint, exist_ok=True)
        cleanup.push("rmdir %s" % mountpoint, os.rmdir, mountpoint)
        sh("mount", "-o", "noatime", self.device, mountpoint)
        cleanup.push("umount %s" % mountpoint, umount, mountpoint)

    @property
    def direct_io(self):
        try:
            with open(os.path.join(self.sysfs, "loop", "dio")) as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def stat(self):
        """(read IOs, bytes read) so far, from /sys/block/loopN/stat."""
        with open(os.path.join(self.sysfs, "stat")) as f:
            fields = f.read().split()
        return int(fields[0]), int(fields[2]) * SECTOR

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)


def umount(path):
    for attempt in range(20):
        proc = subprocess.run(["umount", path], stderr=subprocess.PIPE, text=True)
        if proc.returncode == 0:
            return
        time.sleep(0.25)                        # a dying qemu-io may still hold it
    raise RuntimeError("umount %s: %s" % (path, proc.stderr.strip()))


def drop_caches(tiers):
    """Nothing of the tiers stays in the page cache between runs."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    for tier in tiers:
        sh("blockdev", "--flushbufs", tier.device)


class Throttle:
    """A cgroup whose member processes read a device at most at @iops and
    @bps: cgroup v1 blkio.throttle.* if mounted, else cgroup v2 io.max."""

    V1 = "/sys/fs/cgroup/blkio"

    def __init__(self, name, cleanup):
        if os.path.exists(os.path.join(self.V1, "blkio.throttle.read_iops_device")):
            self.version = 1
            self.path = os.path.join(self.V1, name)
        else:
            self.version = 2
            root = cgroup2_root()
            with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
                f.write("+io")
            self.path = os.path.join(root, name)
        os.mkdir(self.path)
        cleanup.push("rmdir cgroup %s" % self.path, self.remove)
        self.procs = os.path.join(self.path, "cgroup.procs")

    def limit(self, majmin, iops, bps):
        if self.version == 1:
            self._write("blkio.throttle.read_iops_device", "%s %d" % (majmin, iops))
            self._write("blkio.throttle.read_bps_device", "%s %d" % (majmin, bps))
        else:
            self._write("io.max", "%s riops=%d rbps=%d" % (majmin, iops, bps))

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def join_self(self):
        """For preexec_fn: move the calling (child) process into the cgroup."""
        with open(self.procs, "w") as f:
            f.write(str(os.getpid()))

    def members(self):
        with open(self.procs) as f:
            return [int(x) for x in f.read().split()]

    def remove(self):
        for attempt in range(40):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.25)                # members are still exiting
        os.rmdir(self.path)


def cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if fstype == "cgroup2":
                try:
                    with open(os.path.join(mnt, "cgroup.controllers")) as c:
                        if "io" in c.read().split():
                            return mnt
                except OSError:
                    pass
    raise RuntimeError("no blkio (cgroup v1) or io (cgroup v2) controller is mounted")


def allocated(path):
    return os.stat(path).st_blocks * 512


class MemoryLimit:
    """A cgroup v1 memory cgroup: its member processes and the page cache
    they bring in are charged to it, and reclaimed beyond @limit."""

    ROOT = "/sys/fs/cgroup/memory"

    def __init__(self, name, cleanup):
        if not os.path.exists(os.path.join(self.ROOT, "memory.limit_in_bytes")):
            raise RuntimeError("no cgroup v1 memory controller at %s" % self.ROOT)
        self.path = os.path.join(self.ROOT, name)
        os.mkdir(self.path)
        cleanup.push("rmdir cgroup %s" % self.path, self.remove)
        self.procs = os.path.join(self.path, "cgroup.procs")

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(str(value))

    def _read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def set_limit(self, limit):
        self._write("memory.limit_in_bytes", -1)
        self._write("memory.force_empty", 0)        # drop what earlier runs left charged
        if limit is not None:
            self._write("memory.limit_in_bytes", int(limit))
        self._write("memory.max_usage_in_bytes", 0)

    def max_usage(self):
        return int(self._read("memory.max_usage_in_bytes"))

    def stat(self, key):
        for line in self._read("memory.stat").splitlines():
            k, v = line.split()
            if k == key:
                return int(v)
        return 0

    def join_self(self):
        with open(self.procs, "w") as f:
            f.write(str(os.getpid()))

    def remove(self):
        for attempt in range(40):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.25)
        os.rmdir(self.path)
