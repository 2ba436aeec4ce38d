"""Template replicas through the private daemons and plain virsh.

Real qcow2 templates with known data in the primary tier; instances in the
secondary tier back onto replicas of them in
SECONDARY/.stormpool-replicas/TEMPLATE/IDENTITY. Covered: 'auto' (hard link
on one file system, copy across file systems, the secondary tier on a
tmpfs), 'copy' (a sparse copy with its own inode), 'link' refused across
file systems, reuse by the next instance and the status in pool-dumpxml,
a template changed out of band (a new replica; the old instances keep
theirs; the 'none' policy logs the instances at risk), garbage collection
(on vol-delete and at refresh), prepare='eager', kill -9 of virtstoraged
in the middle of a replica copy, template protection through replicas,
flattened replicas of templates with a backing file, vol-clone and
vol-wipe of instances on a replica, and an invalid policy.

Every pool and directory is named spr-*; everything is removed at the
end, also when a step fails.
"""

import fnmatch
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from taplib import (PREFIX, Suite, backing_template, daemon_alive, listdir, make_tmpdir,
                    qemu_img_info, replica_dir, run, sha256, virsh, virsh_fails,
                    vol_names, define_pool, wait_for, assert_pattern, TOP)
try:
    from taplib import start_watchdog
except ImportError:             # an older taplib: no time bound
    start_watchdog = None

MiB = 1024 * 1024
GiB = 1024 * MiB
NS = "urn:stormpool:pool:1.0"
REPLICAS = ".stormpool-replicas"
TMP_PREFIX = ".stormpool-tmp-"
VIRT_ENV = os.path.join(TOP, "tools", "virt-env")
STORAGED_LOG = os.path.join(PREFIX, "var", "log", "libvirt",
                            "virtstoraged.log")
STORAGED_PID = os.path.join(PREFIX, "var", "run", "virtstoraged.pid")
VIRT_ADMIN = os.path.join(PREFIX, "bin", "virt-admin")
MODULE_CATEGORY = "storage.storage_backend_stormpool"
TIME_LIMIT = 300

P_AUTO = "spr-rep-auto"
P_COPY = "spr-rep-copy"
P_XFS = "spr-rep-xfs"
P_LINK = "spr-rep-link"
P_NONE = "spr-rep-none"
P_GC = "spr-rep-gc"
P_EAGER = "spr-rep-eager"
P_CRASH = "spr-rep-crash"
P_BAD = "spr-rep-bad"
P_UPLOAD = "spr-rep-upload"

started = time.monotonic()
suite = Suite("replicas")
root = make_tmpdir("spr-replicas-")
suite.cleanup_dir(root)
state = {"children": []}


def before_exit():
    """The watchdog fired (a daemon hangs): end our children, unmount the
    tmpfs; pools cannot be removed through a hung daemon."""
    for proc in state["children"]:
        if proc.poll() is None:
            proc.kill()
    umount_fast()
    print("# left behind for inspection: %s and the spr-rep-* pools" % root)


watchdog = start_watchdog(suite, TIME_LIMIT, before_exit) if start_watchdog else None


def reflinks(directory):
    """Whether the file system clones files (FICLONE): then a replica copy
    is instant and cannot be caught, or killed, in the middle."""
    a, b = os.path.join(directory, "spr-reflink-a"), os.path.join(directory, "spr-reflink-b")
    with open(a, "wb") as f:
        f.write(b"x" * 65536)
    rc = run(["cp", "--reflink=always", a, b], check=False)[0]
    for path in (a, b):
        if os.path.exists(path):
            os.unlink(path)
    return rc == 0


REFLINK = reflinks(root)


def tiers(name):
    return os.path.join(root, name, "hdd"), os.path.join(root, name, "ssd")


# ---- helpers ------------------------------------------------------------

def virt_env_start():
    run([VIRT_ENV, "start"])


def copy_step(title, func, why):
    """A step that needs a replica copy under way: on a file system that
    reflinks the copy is instant, and the step is skipped saying @why."""
    if REFLINK:
        suite.skip(title, "the file system reflinks: " + why)
    else:
        suite.step(title)(func)


def qemu_io(path, *commands, fmt="qcow2"):
    argv = ["qemu-io", "-f", fmt]
    for c in commands:
        argv += ["-c", c]
    return run(argv + [path])[1]


def make_template(path, size, writes=(), prealloc=False, backing=None):
    """A real qcow2 image; @writes are (pattern, offset, length)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if prealloc:
        argv += ["-o", "preallocation=metadata"]
    if backing:
        argv += ["-b", backing, "-F", "qcow2"]
    run(argv + [path] + ([str(size)] if size else []))
    if writes:
        qemu_io(path, *["write -q -P 0x%02x %d %d" % w for w in writes])


def make_big_template(path, size):
    """A qcow2 template full of random data; the pattern file's odd length
    makes every block different."""
    pattern = os.path.join(root, "spr-random.pat")
    with open(pattern, "wb") as f:
        f.write(os.urandom(64 * MiB + 1))
    run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(size)])
    qemu_io(path, "write -q -s %s 0 %d" % (pattern, size))
    os.unlink(pattern)


def qemu_img_compare(a, b):
    rc, out, err = run(["qemu-img", "compare", "-U", a, b], check=False)
    assert rc == 0, "qemu-img compare %s %s: rc %d %s %s" % (a, b, rc, out, err)


def qemu_img_check(path):
    run(["qemu-img", "check", "-q", "-U", path])


def expected_identity(template):
    """The replica identity as the module computes it: sha256 of
    dev:ino:size:mtime, 16 hex digits."""
    st = os.stat(template)
    key = "%d:%d:%d:%d.%09d" % (st.st_dev, st.st_ino, st.st_size,
                                st.st_mtime_ns // 10 ** 9, st.st_mtime_ns % 10 ** 9)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def replica_files(secondary):
    """Every file under SECONDARY/.stormpool-replicas (relative paths)."""
    top = os.path.join(secondary, REPLICAS)
    found = []
    for d, _, files in os.walk(top):
        found += [os.path.relpath(os.path.join(d, f), top) for f in files]
    return sorted(found)


def tmp_files(d):
    return [f for f in listdir(d) if f.startswith(TMP_PREFIX)]


def backing_of(overlay):
    return qemu_img_info(overlay)["backing-filename"]


def pool_replicas(pool):
    """(effective policy, [replica attributes]) from pool-dumpxml."""
    xml = virsh("pool-dumpxml", pool)
    node = ET.fromstring(xml).find("{%s}replicas" % NS)
    assert node is not None, "no <stormpool:replicas> in:\n" + xml
    return node.get("policy"), [dict(r.attrib) for r in node.findall("{%s}replica" % NS)]


def assert_replica_status(pool, path, dependents, policy="copy"):
    got_policy, replicas = pool_replicas(pool)
    assert got_policy == policy, (got_policy, replicas)
    mine = [r for r in replicas if r["path"] == path]
    assert len(mine) == 1, (path, replicas)
    st = os.stat(path)
    r = mine[0]
    assert r["dependents"] == str(dependents), (r, dependents)
    assert r["size"] == str(st.st_size), (r, st.st_size)
    assert r["allocation"] == str(st.st_blocks * 512), (r, st.st_blocks * 512)
    return replicas


def new_pool(name, primary, secondary, replica=None):
    """Define and build a pool (not started); cleanup registered first."""
    suite.cleanup_pool(name)
    define_pool(name, primary, secondary, replica=replica)
    virsh("pool-build", name)


def create_instance(pool, name, template, size):
    virsh("vol-create-as", pool, name, str(size), "--format", "qcow2",
          "--backing-vol", template, "--backing-vol-format", "qcow2")


def pool_running(pool):
    rc, out, _ = run(["virsh", "-q", "pool-info", pool], check=False)
    return rc == 0 and re.search(r"State:\s+running", out) is not None


def module_log_level():
    """The lowest priority (1 debug, 2 info, 3 warning, 4 error) of the
    module's messages that virtstoraged writes to its log file right now.
    The daemons are shared, and a benchmark may lower the logging at run
    time (bench/bench-create sets '3:*' through virt-admin)."""
    def admin(cmd):
        rc, out, _ = run([VIRT_ADMIN, "-c", "virtstoraged:///system", cmd], check=False)
        return out.split(":", 1)[1].split() if rc == 0 and ":" in out else None
    filters, outputs = admin("daemon-log-filters"), admin("daemon-log-outputs")
    if filters is None or outputs is None:
        return 5
    level = 3                               # libvirt's default priority
    for f in filters:
        prio, _, pattern = f.lstrip("+").partition(":")
        if "*" not in pattern:
            pattern = "*%s*" % pattern
        if fnmatch.fnmatchcase(MODULE_CATEGORY, pattern):
            level = int(prio)
            break
    out_level = [int(o.split(":", 1)[0]) for o in outputs if o.endswith(STORAGED_LOG)]
    return max(level, min(out_level)) if out_level else 5


def log_mark():
    """Where the log ends now, and whether the module's info messages reach it."""
    return os.path.getsize(STORAGED_LOG), module_log_level()


def log_since(mark):
    size = os.path.getsize(STORAGED_LOG)
    with open(STORAGED_LOG, "rb") as f:
        if size >= mark[0]:
            f.seek(mark[0])
        return f.read().decode("utf-8", "replace")


def log_checkable(mark, level):
    """True if messages of @level reached the log since @mark; else say why
    a log assertion is not made."""
    now = module_log_level()
    if max(mark[1], now) <= level:
        return True
    print("# log not checked: virtstoraged logs the module from level %d now "
          "(another user lowered it), this message is level %d" % (max(mark[1], now), level))
    return False


def assert_logged(mark, text, level=2, count=None, timeout=30):
    """@text in the log since @mark (@count times): messages of the pool's
    background work may come a little after the command that queued it."""
    if not log_checkable(mark, level):
        return
    deadline = time.monotonic() + timeout
    want = 1 if count is None else count
    while time.monotonic() < deadline and log_since(mark).count(text) < want:
        time.sleep(0.05)
    log = log_since(mark)
    if count is None:
        assert text in log, "%r not in the log:\n%s" % (text, log[-3000:])
    else:
        assert log.count(text) == count, "%r %d times in the log, not %d" % (
            text, log.count(text), count)


def wait_no_replica_in_progress(secondary, timeout=60):
    """Cleanup helper: let background replica copies end before the pool
    and its directories go."""
    deadline = time.monotonic() + timeout
    top = os.path.join(secondary, REPLICAS)
    while time.monotonic() < deadline:
        busy = [f for _, _, files in os.walk(top) for f in files if f.startswith(TMP_PREFIX)]
        if not busy:
            return
        time.sleep(0.1)


# ---- 1. auto on one file system: a hard link -----------------------------

auto_hdd, auto_ssd = tiers("auto")
t_auto = os.path.join(auto_hdd, "tpl.qcow2")


@suite.step("1. policy 'auto' on one file system: the instance backs onto a hard-link replica")
def _():
    new_pool(P_AUTO, auto_hdd, auto_ssd)
    make_template(t_auto, 64 * MiB, [(0xa1, 0, 2 * MiB), (0xa2, 40 * MiB, MiB)])
    virsh("pool-start", P_AUTO)
    create_instance(P_AUTO, "a1.qcow2", "tpl.qcow2", 64 * MiB)
    overlay = os.path.join(auto_ssd, "a1.qcow2")
    want = os.path.join(auto_ssd, REPLICAS, "tpl.qcow2", expected_identity(t_auto))
    backing = backing_of(overlay)
    assert backing == want, (backing, want)
    assert backing_template(overlay, auto_ssd) == ("tpl.qcow2", want)
    assert os.path.samefile(backing, t_auto), "replica is not a hard link of the template"
    assert os.stat(t_auto).st_nlink == 2
    assert replica_files(auto_ssd) == [os.path.join("tpl.qcow2", os.path.basename(want))]
    assert_pattern(overlay, 0xa1, 0, 2 * MiB)
    assert_pattern(overlay, 0xa2, 40 * MiB, MiB)
    assert_replica_status(P_AUTO, want, 1, policy="link")
    assert vol_names(P_AUTO) == ["a1.qcow2", "tpl.qcow2"], vol_names(P_AUTO)


# ---- 2. copy on one file system: a real, sparse copy ----------------------

copy_hdd, copy_ssd = tiers("copy")
t_win = os.path.join(copy_hdd, "win.qcow2")
WIN_WRITES = [(0xab, 0, 4 * MiB), (0xcd, 100 * MiB, MiB)]


@suite.step("2. policy 'copy' on one file system: a sparse copy with its own inode and the template's data")
def _():
    new_pool(P_COPY, copy_hdd, copy_ssd, replica="policy='copy'")
    # preallocation=metadata: a 256 MiB file that is mostly holes
    make_template(t_win, 256 * MiB, WIN_WRITES, prealloc=True)
    state["win_sha"] = sha256(t_win)
    virsh("pool-start", P_COPY)
    mark = log_mark()
    create_instance(P_COPY, "c1.qcow2", "win.qcow2", 256 * MiB)
    overlay = os.path.join(copy_ssd, "c1.qcow2")
    replica = backing_of(overlay)
    want = os.path.join(copy_ssd, REPLICAS, "win.qcow2", expected_identity(t_win))
    assert replica == want, (replica, want)
    state["old_replica"] = replica
    assert qemu_img_info(overlay)["backing-filename-format"] == "qcow2"
    assert not os.path.samefile(replica, t_win), "a 'copy' replica is the template's inode"
    assert os.stat(t_win).st_nlink == 1
    assert sha256(replica) == state["win_sha"], "replica content differs from the template"
    qemu_img_compare(replica, t_win)
    rs, ts = os.stat(replica), os.stat(t_win)
    assert rs.st_size == ts.st_size, (rs.st_size, ts.st_size)
    assert ts.st_blocks * 512 < ts.st_size // 4, "test template is not sparse"
    assert rs.st_blocks * 512 <= ts.st_blocks * 512 + MiB, \
        "replica not sparse: %d bytes allocated, template %d" % (rs.st_blocks * 512,
                                                                  ts.st_blocks * 512)
    # read by the QEMU of any user: libvirt does not relabel it (relabel='no')
    assert oct(rs.st_mode & 0o7777) == oct(0o644), oct(rs.st_mode)
    # traversable by a QEMU of another user, not listable
    assert oct(os.stat(os.path.dirname(replica)).st_mode & 0o777) == oct(0o711)
    for pattern, offset, length in WIN_WRITES:
        assert_pattern(overlay, pattern, offset, length)
    assert_pattern(overlay, 0x00, 50 * MiB, MiB)
    assert_logged(mark, "making copy replica '%s' of template '%s' (%d bytes)" %
                  (replica, t_win, ts.st_size))
    assert_logged(mark, "replica '%s' made in" % replica)
    assert vol_names(P_COPY) == ["c1.qcow2", "win.qcow2"], vol_names(P_COPY)


# ---- 3. across file systems: auto copies, link is refused ----------------

fast = os.path.join(root, "spr-fast")


def umount_fast():
    if os.path.ismount(fast):
        rc, _, err = run(["umount", fast], check=False)
        if rc != 0:
            run(["umount", "-l", fast], check=False)


@suite.step("3a. policy 'auto' with the secondary tier on a tmpfs: a copy replica")
def _():
    os.makedirs(fast)
    suite.cleanup(umount_fast)
    run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "spr-tmpfs", fast])
    primary = os.path.join(root, "xfs", "hdd")
    secondary = os.path.join(fast, "xfs-ssd")
    new_pool(P_XFS, primary, secondary)
    template = os.path.join(primary, "x.qcow2")
    make_template(template, 32 * MiB, [(0x3c, 0, MiB), (0x3d, 20 * MiB, MiB)])
    virsh("pool-start", P_XFS)
    assert os.stat(primary).st_dev != os.stat(secondary).st_dev
    create_instance(P_XFS, "x1.qcow2", "x.qcow2", 32 * MiB)
    overlay = os.path.join(secondary, "x1.qcow2")
    replica = backing_of(overlay)
    assert replica == os.path.join(secondary, REPLICAS, "x.qcow2", expected_identity(template))
    assert os.stat(replica).st_dev == os.stat(secondary).st_dev, "replica not on the tmpfs"
    assert os.stat(template).st_nlink == 1
    assert sha256(replica) == sha256(template)
    assert_pattern(overlay, 0x3c, 0, MiB)
    assert_pattern(overlay, 0x3d, 20 * MiB, MiB)
    assert_replica_status(P_XFS, replica, 1, policy="copy")


@suite.step("3a2. a replica copy that would leave less than 5% of the secondary tier free is "
            "refused; nothing is left behind")
def _():
    primary = os.path.join(root, "xfs", "hdd")
    secondary = os.path.join(fast, "xfs-ssd")
    template = os.path.join(primary, "huge.qcow2")
    free = os.statvfs(secondary).f_bavail * os.statvfs(secondary).f_frsize
    # fits in what is free, but not with 5% of the 64 MiB tier kept free
    data = free - 2 * MiB
    make_template(template, 64 * MiB, [(0x3e, 0, data)])
    digest = sha256(template)
    virsh("pool-refresh", P_XFS)
    before = vol_names(P_XFS)
    virsh_fails("vol-create-as", P_XFS, "h1.qcow2", str(64 * MiB), "--format", "qcow2",
                "--backing-vol", "huge.qcow2", "--backing-vol-format", "qcow2",
                expect="not enough space for a replica of '%s'" % template)
    assert vol_names(P_XFS) == before, vol_names(P_XFS)
    rdir = replica_dir(secondary, "huge.qcow2")
    assert not os.path.exists(rdir) or listdir(rdir) == [], listdir(rdir)
    assert tmp_files(secondary) == []
    assert sha256(template) == digest
    # a template with a backing file is flattened by qemu-img: the same rule
    top = os.path.join(primary, "huge-top.qcow2")
    make_template(top, 0, [(0x3f, 0, MiB)], backing=template)
    virsh("pool-refresh", P_XFS)
    virsh_fails("vol-create-as", P_XFS, "h2.qcow2", str(64 * MiB), "--format", "qcow2",
                "--backing-vol", "huge-top.qcow2", "--backing-vol-format", "qcow2",
                expect="not enough space for a replica of '%s'" % top)
    rdir = replica_dir(secondary, "huge-top.qcow2")
    assert not os.path.exists(rdir) or listdir(rdir) == [], listdir(rdir)
    assert tmp_files(secondary) == []
    assert pool_running(P_XFS) and daemon_alive()
    virsh("vol-delete", "--pool", P_XFS, "huge-top.qcow2")
    virsh("vol-delete", "--pool", P_XFS, "huge.qcow2")


@suite.step("3b. policy 'link' across file systems: pool-start fails with a clear error")
def _():
    primary = os.path.join(root, "link", "hdd")
    secondary = os.path.join(fast, "link-ssd")
    new_pool(P_LINK, primary, secondary, replica="policy='link'")
    err = virsh_fails("pool-start", P_LINK,
                      expect="replica policy 'link' needs both tiers on one file system")
    assert primary in err and secondary in err, err
    assert not pool_running(P_LINK)
    assert P_LINK in virsh("pool-list", "--inactive", "--name")
    assert daemon_alive()


# ---- 4. reuse ---------------------------------------------------------------

@suite.step("4. the second instance reuses the replica; pool-dumpxml shows dependents='2' before and after a refresh")
def _():
    replica = state["old_replica"]
    ino = os.stat(replica).st_ino
    assert_replica_status(P_COPY, replica, 1)
    create_instance(P_COPY, "c2.qcow2", "win.qcow2", 256 * MiB)
    assert backing_of(os.path.join(copy_ssd, "c2.qcow2")) == replica
    assert os.stat(replica).st_ino == ino, "the replica was made again"
    assert listdir(replica_dir(copy_ssd, "win.qcow2")) == [os.path.basename(replica)]
    assert replica_files(copy_ssd) == [os.path.join("win.qcow2", os.path.basename(replica))]
    # right after the vol-create, no refresh
    replicas = assert_replica_status(P_COPY, replica, 2)
    assert len(replicas) == 1, replicas
    virsh("pool-refresh", P_COPY)
    replicas = assert_replica_status(P_COPY, replica, 2)
    assert len(replicas) == 1 and replicas[0]["template"] == "win.qcow2", replicas


# ---- 5. identity change -----------------------------------------------------

@suite.step("5a. a template changed out of band gets a new replica; old instances keep theirs")
def _():
    old = state["old_replica"]
    old_sha = sha256(old)
    virsh("pool-refresh", P_COPY)          # the module records the template's stamp
    mark = log_mark()
    time.sleep(0.01)
    qemu_io(t_win, "write -q -P 0x5e 8M 1M")        # behind libvirt's back
    new_identity = expected_identity(t_win)
    assert new_identity != os.path.basename(old)
    create_instance(P_COPY, "c3.qcow2", "win.qcow2", 256 * MiB)
    new = backing_of(os.path.join(copy_ssd, "c3.qcow2"))
    assert new == os.path.join(replica_dir(copy_ssd, "win.qcow2"), new_identity), (new, old)
    state["new_replica"] = new
    assert sorted(listdir(replica_dir(copy_ssd, "win.qcow2"))) == \
        sorted([os.path.basename(old), new_identity])
    for name in ("c1.qcow2", "c2.qcow2"):
        assert backing_of(os.path.join(copy_ssd, name)) == old, name
    assert sha256(old) == old_sha, "the old replica changed"
    assert sha256(new) == sha256(t_win)
    assert_pattern(os.path.join(copy_ssd, "c1.qcow2"), 0x00, 8 * MiB, MiB)
    assert_pattern(os.path.join(copy_ssd, "c3.qcow2"), 0x5e, 8 * MiB, MiB)
    assert_pattern(os.path.join(copy_ssd, "c3.qcow2"), 0xab, 0, 4 * MiB)
    virsh_fails("vol-delete", "--pool", P_COPY, "win.qcow2",
                      expect="cannot delete template 'win.qcow2': 3 instance(s) depend on it: "
                             "c1.qcow2, c2.qcow2, c3.qcow2")
    # copies are safe: the refresh notices the change but names no one at risk
    virsh("pool-refresh", P_COPY)
    assert_logged(mark, "template '%s' changed; no instance depends on it directly" % t_win)
    log = log_since(mark)
    at_risk = [l for l in log.splitlines() if "behind libvirt's back" in l and t_win in l]
    assert at_risk == [], at_risk
    replicas = pool_replicas(P_COPY)[1]
    assert {(r["path"], r["dependents"]) for r in replicas} == {(old, "2"), (new, "1")}, replicas
    state["win_sha"] = sha256(t_win)


none_hdd, none_ssd = tiers("none")
t_none = os.path.join(none_hdd, "n.qcow2")


@suite.step("5b. policy 'none': an out-of-band template change makes refresh log the instances at risk")
def _():
    new_pool(P_NONE, none_hdd, none_ssd, replica="policy='none'")
    make_template(t_none, 16 * MiB, [(0x6e, 0, MiB)])
    virsh("pool-start", P_NONE)
    create_instance(P_NONE, "n1.qcow2", "n.qcow2", 16 * MiB)
    create_instance(P_NONE, "n2.qcow2", "n.qcow2", 16 * MiB)
    for name in ("n1.qcow2", "n2.qcow2"):
        assert backing_of(os.path.join(none_ssd, name)) == t_none
    assert not os.path.exists(os.path.join(none_ssd, REPLICAS))
    assert pool_replicas(P_NONE) == ("none", [])
    virsh("pool-refresh", P_NONE)
    mark = log_mark()
    virsh("pool-refresh", P_NONE)
    assert "behind libvirt's back" not in log_since(mark), "error logged without a change"
    time.sleep(0.01)
    qemu_io(t_none, "write -q -P 0x6f 1M 1M")
    mark = log_mark()
    virsh("pool-refresh", P_NONE)
    want = ("template '%s' changed behind libvirt's back while 2 instance(s) depend on it "
            "directly; their data is at risk: " % t_none)
    if log_checkable(mark, 4):
        log = log_since(mark)
        lines = [l for l in log.splitlines() if want in l]
        assert len(lines) == 1 and " error : " in lines[0], log[-3000:]
        names = lines[0].split(want, 1)[1].strip().split(", ")
        assert sorted(names) == ["n1.qcow2", "n2.qcow2"], lines[0]
    # the stamp is updated: the next refresh is quiet again
    mark = log_mark()
    virsh("pool-refresh", P_NONE)
    assert "behind libvirt's back" not in log_since(mark)


@suite.step("5b2. a template changed by the pool itself (vol-resize) raises no alarm at the next refresh")
def _():
    hdd, ssd = os.path.join(root, "stamp", "hdd"), os.path.join(root, "stamp", "ssd")
    pool = P_NONE + "-stamp"
    new_pool(pool, hdd, ssd, replica="policy='none'")
    template = os.path.join(hdd, "s.qcow2")
    make_template(template, 16 * MiB, [(0x51, 0, MiB)])
    virsh("pool-start", pool)
    virsh("pool-refresh", pool)
    virsh("vol-resize", "--pool", pool, "s.qcow2", "32M")
    create_instance(pool, "s1.qcow2", "s.qcow2", 32 * MiB)
    mark = log_mark()
    virsh("pool-refresh", pool)
    assert "behind libvirt's back" not in log_since(mark), log_since(mark)[-2000:]
    virsh("vol-delete", "--pool", pool, "s1.qcow2")
    virsh("vol-delete", "--pool", pool, "s.qcow2")
    virsh("pool-destroy", pool)
    virsh("pool-undefine", pool)


@suite.step("5b3. a template changed while the daemon was down is reported by the first refresh "
            "after the restart")
def _():
    virsh("pool-refresh", P_NONE)
    assert os.path.exists(os.path.join(none_ssd, ".stormpool-template-stamps"))
    assert "stormpool-template-stamps" not in " ".join(vol_names(P_NONE))
    run([VIRT_ENV, "stop"])
    try:
        time.sleep(0.01)
        qemu_io(t_none, "write -q -P 0x70 2M 1M")
        mark = log_mark()
    finally:
        virt_env_start()
    wait_for(lambda: pool_running(P_NONE), 30, "the pool to run again after the restart")
    assert_logged(mark, "template '%s' changed behind libvirt's back while 2 instance(s) "
                  "depend on it directly; their data is at risk: n1.qcow2, n2.qcow2" % t_none,
                  level=4, count=1)
    mark = log_mark()
    virsh("pool-refresh", P_NONE)
    assert "behind libvirt's back" not in log_since(mark)


@suite.step("5c. policy 'auto' (link): a template changed in place puts the hard-link instances at risk")
def _():
    virsh("pool-refresh", P_AUTO)
    time.sleep(0.01)
    qemu_io(t_auto, "write -q -P 0xa3 4M 1M")
    mark = log_mark()
    virsh("pool-refresh", P_AUTO)
    assert_logged(mark, "template '%s' changed behind libvirt's back while 1 instance(s) "
                  "depend on it directly; their data is at risk: a1.qcow2" % t_auto, level=4)


# ---- 6. garbage collection --------------------------------------------------

gc_hdd, gc_ssd = tiers("gc")


@suite.step("6a. deleting the last instance of a replica removes it and its directories")
def _():
    new_pool(P_GC, gc_hdd, gc_ssd, replica="policy='copy'")
    template = os.path.join(gc_hdd, "g.qcow2")
    make_template(template, 16 * MiB, [(0x67, 0, MiB)])
    virsh("pool-start", P_GC)
    create_instance(P_GC, "g1.qcow2", "g.qcow2", 16 * MiB)
    create_instance(P_GC, "g2.qcow2", "g.qcow2", 16 * MiB)
    replica = backing_of(os.path.join(gc_ssd, "g1.qcow2"))
    assert backing_of(os.path.join(gc_ssd, "g2.qcow2")) == replica
    assert_replica_status(P_GC, replica, 2)
    virsh("vol-delete", "--pool", P_GC, "g1.qcow2")
    assert os.path.exists(replica), "replica removed while an instance uses it"
    assert_replica_status(P_GC, replica, 1)
    virsh("vol-delete", "--pool", P_GC, "g2.qcow2")
    assert not os.path.exists(replica), "replica kept after its last instance"
    assert not os.path.exists(os.path.dirname(replica))
    assert not os.path.exists(os.path.join(gc_ssd, REPLICAS)), listdir(gc_ssd)
    assert listdir(gc_ssd) == []
    assert pool_replicas(P_GC) == ("copy", [])
    assert vol_names(P_GC) == ["g.qcow2"]


@suite.step("6b. an instance removed behind libvirt's back leaves a replica that pool-refresh removes")
def _():
    create_instance(P_GC, "g3.qcow2", "g.qcow2", 16 * MiB)
    replica = backing_of(os.path.join(gc_ssd, "g3.qcow2"))
    assert os.path.exists(replica)
    os.unlink(os.path.join(gc_ssd, "g3.qcow2"))
    assert os.path.exists(replica)
    mark = log_mark()
    virsh("pool-refresh", P_GC)
    assert not os.path.exists(replica), "unused replica kept by the refresh"
    assert not os.path.exists(os.path.join(gc_ssd, REPLICAS)), listdir(gc_ssd)
    assert_logged(mark, "removed replica '%s' of template 'g.qcow2': nothing uses it any more" % replica)
    assert pool_replicas(P_GC) == ("copy", [])
    assert vol_names(P_GC) == ["g.qcow2"]


# ---- 7. prepare='eager' -----------------------------------------------------

eager_hdd, eager_ssd = tiers("eager")
t_big = os.path.join(eager_hdd, "big.qcow2")
BIG = GiB


@suite.step("7a. prepare='eager': replicas made in the background at pool-start; a vol-create during the copy waits for it")
def _():
    new_pool(P_EAGER, eager_hdd, eager_ssd, replica="policy='copy' prepare='eager'")
    suite.cleanup(wait_no_replica_in_progress, eager_ssd)
    make_template(os.path.join(eager_hdd, "small.qcow2"), 16 * MiB, [(0x51, 0, MiB)])
    t0 = time.monotonic()
    make_big_template(t_big, BIG)
    print("# 1 GiB random template made in %.1f s" % (time.monotonic() - t0))
    state["big_sha"] = sha256(t_big)
    rdir = replica_dir(eager_ssd, "big.qcow2")
    big_replica = os.path.join(rdir, expected_identity(t_big))
    # every temporary file that appears in the replica directory: one copy
    # only, the eager one, must ever be under way
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(tmp_files(rdir))
            time.sleep(0.002)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        mark = log_mark()
        virsh("pool-start", P_EAGER, wait=False)
        if REFLINK:
            print("# the file system reflinks: the eager copy is instant, not caught under way")
        else:
            wait_for(lambda: seen, 5, "the eager copy's temporary file")
            assert not os.path.exists(big_replica), "1 GiB copied before it could be seen"
            # a refresh during the copy leaves the copy's temporary file alone
            virsh("pool-refresh", P_EAGER, wait=False)
            assert tmp_files(rdir) and not os.path.exists(big_replica), \
                "the copy ended too early for this test"
        t0 = time.monotonic()
        create_instance(P_EAGER, "e1.qcow2", "big.qcow2", BIG)
        waited = time.monotonic() - t0
        there_at_return = os.path.exists(big_replica)
    finally:
        stop.set()
        watcher.join()
    print("# vol-create waited %.2f s for the eager replica; temporary files seen: %s" %
          (waited, sorted(seen)))
    assert there_at_return, "vol-create returned before the replica it backs onto existed"
    assert len(seen) == 1 or (REFLINK and not seen), "more than one copy of the replica was made: %s" % sorted(seen)
    overlay = os.path.join(eager_ssd, "e1.qcow2")
    assert backing_of(overlay) == big_replica
    assert listdir(rdir) == [os.path.basename(big_replica)], listdir(rdir)
    assert sha256(big_replica) == state["big_sha"], "instance backs onto an incomplete replica"
    qemu_img_check(overlay)
    assert_logged(mark, "making copy replica '%s'" % big_replica, count=1)
    assert_logged(mark, "replica '%s' made in" % big_replica, count=1)
    if not REFLINK:
        # a 1 GiB copy reports its progress every tenth
        assert_logged(mark, "replica '%s': 50%% copied" % big_replica, count=1)
    assert "cannot prepare replica" not in log_since(mark)


@suite.step("7b. prepare='eager': an unused template's replica appears on its own and survives refreshes")
def _():
    small = os.path.join(eager_hdd, "small.qcow2")
    replica = os.path.join(replica_dir(eager_ssd, "small.qcow2"), expected_identity(small))
    wait_for(lambda: os.path.exists(replica), 10, replica)
    ino = os.stat(replica).st_ino
    assert sha256(replica) == sha256(small)
    virsh("pool-refresh", P_EAGER)
    virsh("pool-refresh", P_EAGER)
    assert os.path.exists(replica) and os.stat(replica).st_ino == ino
    replicas = assert_replica_status(P_EAGER, replica, 0)
    assert {r["template"]: r["dependents"] for r in replicas} == \
        {"big.qcow2": "1", "small.qcow2": "0"}, replicas


@suite.step("7c. prepare='eager': deleting the last instance keeps the template's current replica")
def _():
    small = os.path.join(eager_hdd, "small.qcow2")
    replica = os.path.join(replica_dir(eager_ssd, "small.qcow2"), expected_identity(small))
    create_instance(P_EAGER, "es1.qcow2", "small.qcow2", 16 * MiB)
    assert backing_of(os.path.join(eager_ssd, "es1.qcow2")) == replica
    before = os.stat(replica)
    mark = log_mark()
    virsh("vol-delete", "--pool", P_EAGER, "es1.qcow2")
    kept = os.path.exists(replica)
    # whatever happened, the next refresh must leave the current replica there
    virsh("pool-refresh", P_EAGER)
    wait_for(lambda: os.path.exists(replica), 10, "the eager replica after a refresh")
    after = os.stat(replica)
    remade = (after.st_ino, after.st_ctime_ns) != (before.st_ino, before.st_ctime_ns)
    # README: a replica "is removed when its last instance is deleted ...,
    # except the current replica of a template under prepare='eager'"
    assert kept, ("vol-delete of the last instance removed the current replica of a "
                  "template under prepare='eager'%s" %
                  ("; the next pool-refresh made it again" if remade else ""))
    assert not remade, "the eager replica was made again"
    assert_logged(mark, "making copy replica '%s'" % replica, count=0)


def eager_copy_stopped_by_destroy():
    t_big3 = os.path.join(eager_hdd, "big3.qcow2")
    run(["cp", "--sparse=always", "--reflink=never", t_big, t_big3])
    rdir = replica_dir(eager_ssd, "big3.qcow2")
    replica = os.path.join(rdir, expected_identity(t_big3))
    mark = log_mark()
    virsh("pool-refresh", P_EAGER, wait=False)      # queues the eager copy
    wait_for(lambda: tmp_files(rdir), 10, "the eager copy's temporary file")
    virsh("pool-destroy", P_EAGER)
    # the copy stops within one 64 MiB chunk and takes its file with it;
    # pool-destroy waits for that
    assert not os.path.exists(rdir) or not tmp_files(rdir), tmp_files(rdir)
    time.sleep(1)
    assert not os.path.exists(replica), "the copy went on after pool-destroy"
    assert_logged(mark, "replica '%s': copy stopped after" % replica, count=1)
    assert_logged(mark, "cannot prepare replica", level=4, count=0)
    # started again, the pool makes the replica after all
    virsh("pool-start", P_EAGER)
    wait_for(lambda: os.path.exists(replica), 60, "the eager replica after pool-start")
    assert sha256(replica) == state["big_sha"]
    virsh("vol-delete", "--pool", P_EAGER, "big3.qcow2")
    virsh("pool-refresh", P_EAGER)
    wait_no_replica_in_progress(eager_ssd)


copy_step("7d. prepare='eager': pool-destroy stops a replica copy under way; "
          "pool-start makes it again", eager_copy_stopped_by_destroy,
          "a replica copy is instant")


@suite.step("7e. vol-delete of a template removes its unused replicas at once")
def _():
    small = os.path.join(eager_hdd, "small.qcow2")
    rdir = replica_dir(eager_ssd, "small.qcow2")
    replica = os.path.join(rdir, expected_identity(small))
    wait_for(lambda: os.path.exists(replica), 30, "the eager replica of small.qcow2")
    mark = log_mark()
    virsh("vol-delete", "--pool", P_EAGER, "small.qcow2")
    # no refresh in between: the replica and its directory are gone
    assert not os.path.exists(rdir), listdir(rdir)
    assert_logged(mark, "removed replica '%s'" % replica)
    assert "small.qcow2" not in [r["template"] for r in pool_replicas(P_EAGER)[1]]


# ---- 8. kill -9 during a replica copy --------------------------------------

crash_hdd, crash_ssd = tiers("crash")
t_crash_big = os.path.join(crash_hdd, "big.qcow2")


@suite.step("8a. setup: an autostarted 'copy' pool with a 1 GiB template and an instance of another")
def _():
    new_pool(P_CRASH, crash_hdd, crash_ssd, replica="policy='copy'")
    suite.cleanup(wait_no_replica_in_progress, crash_ssd)
    os.link(t_big, t_crash_big)       # the same 1 GiB of random data
    small = os.path.join(crash_hdd, "small2.qcow2")
    make_template(small, 16 * MiB, [(0x52, 0, MiB)])
    virsh("pool-start", P_CRASH)
    virsh("pool-autostart", P_CRASH)
    create_instance(P_CRASH, "keep.qcow2", "small2.qcow2", 16 * MiB)
    keep = os.path.join(crash_ssd, "keep.qcow2")
    qemu_io(keep, "write -q -P 0x4b 2M 1M")
    state["crash_before"] = {p: sha256(p) for p in
                             (small, keep, backing_of(keep), t_crash_big)}
    state["crash_vols"] = vol_names(P_CRASH)
    assert state["crash_vols"] == ["big.qcow2", "keep.qcow2", "small2.qcow2"]


def crash_during_copy():
    assert "crash_before" in state, "setup failed"
    rdir = replica_dir(crash_ssd, "big.qcow2")
    full = os.path.join(rdir, expected_identity(t_crash_big))
    mark = log_mark()
    proc = subprocess.Popen(["virsh", "-q", "vol-create-as", P_CRASH, "victim.qcow2",
                             str(BIG), "--format", "qcow2", "--backing-vol", "big.qcow2",
                             "--backing-vol-format", "qcow2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state["children"].append(proc)
    suite.cleanup(lambda: proc.poll() is None and proc.kill())
    tmp = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        found = tmp_files(rdir)
        if found:
            tmp = os.path.join(rdir, found[0])
            break
        time.sleep(0.005)
    assert tmp, "no temporary replica file seen (virsh rc %s: %s)" % (
        proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
    with open(STORAGED_PID) as f:
        pid = int(f.read().strip())
    with open("/proc/%d/comm" % pid) as f:
        assert f.read().strip() == "virtstoraged"
    try:
        try:
            partial = os.path.getsize(tmp)
        except OSError:
            partial = -1                # renamed (or gone) an instant ago
        os.kill(pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10, "virtstoraged to die")
        print("# killed virtstoraged with %d of %d bytes copied; virsh rc %d: %s" %
              (partial, os.path.getsize(t_crash_big), proc.returncode, err.strip()))
        assert os.path.exists(tmp), "temporary file vanished before the restart"
    finally:
        virt_env_start()
    wait_for(lambda: pool_running(P_CRASH), 30, "the autostarted pool to run again")
    victim = os.path.join(crash_ssd, "victim.qcow2")
    # the refresh at start removed the half copy, in its background work
    wait_for(lambda: not os.path.exists(tmp), 60, "the half replica %s to go" % tmp)
    assert tmp_files(rdir) == [] and tmp_files(crash_ssd) == []
    assert_logged(mark, "removed '%s' left behind by an interrupted volume creation" % tmp,
                  level=3)
    left = listdir(rdir)
    assert left in ([], [os.path.basename(full)]), left
    if left:
        assert sha256(full) == state["big_sha"], "a half replica was kept under its final name"
    if proc.returncode != 0:
        assert not left, "a complete replica but the create failed"
        assert not os.path.exists(victim), "an instance was created by a failed vol-create"
        assert vol_names(P_CRASH) == state["crash_vols"], vol_names(P_CRASH)
    else:
        assert os.path.exists(victim) and backing_of(victim) == full
        qemu_img_check(victim)
    for path, digest in state["crash_before"].items():
        assert sha256(path) == digest, "%s changed" % path
    keep = os.path.join(crash_ssd, "keep.qcow2")
    qemu_img_check(keep)
    assert_pattern(keep, 0x4b, 2 * MiB, MiB)
    assert_pattern(keep, 0x52, 0, MiB)
    assert daemon_alive()
    assert run([VIRT_ENV, "status"], check=False)[0] == 0
    for pool in (P_AUTO, P_COPY, P_XFS, P_NONE, P_GC, P_EAGER):
        assert pool_running(pool), "%s not running after the restart" % pool


copy_step("8b. kill -9 virtstoraged while vol-create copies a replica: "
          "no half replica, everything intact", crash_during_copy,
          "a replica copy cannot be interrupted")


@suite.step("8c. after the crash the same vol-create succeeds on a complete replica")
def _():
    victim = os.path.join(crash_ssd, "victim.qcow2")
    if os.path.exists(victim):
        virsh("vol-delete", "--pool", P_CRASH, "victim.qcow2")
    create_instance(P_CRASH, "victim.qcow2", "big.qcow2", BIG)
    full = os.path.join(replica_dir(crash_ssd, "big.qcow2"), expected_identity(t_crash_big))
    assert backing_of(victim) == full
    assert listdir(replica_dir(crash_ssd, "big.qcow2")) == [os.path.basename(full)]
    assert sha256(full) == state["big_sha"]
    qemu_img_check(victim)
    assert sha256(t_crash_big) == state["big_sha"]


# ---- 9. protection through replicas ----------------------------------------

t_prot = os.path.join(copy_hdd, "prot.qcow2")


def template_held_during_copy():
    """A distinct 1 GiB template: its replica has to be copied."""
    t_big2 = os.path.join(crash_hdd, "big2.qcow2")
    run(["cp", "--sparse=always", "--reflink=never", t_big, t_big2])
    virsh("pool-refresh", P_CRASH)
    digest = sha256(t_big2)
    rdir = replica_dir(crash_ssd, "big2.qcow2")
    proc = subprocess.Popen(["virsh", "-q", "vol-create-as", P_CRASH, "held.qcow2",
                             str(BIG), "--format", "qcow2", "--backing-vol", "big2.qcow2",
                             "--backing-vol-format", "qcow2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state["children"].append(proc)
    suite.cleanup(lambda: proc.poll() is None and proc.kill())
    wait_for(lambda: tmp_files(rdir) or proc.poll() is not None, 30,
             "the replica copy to start")
    tmp = os.path.join(rdir, tmp_files(rdir)[0])
    rc, _, err = run(["qemu-img", "resize", "-q", "-f", "qcow2", t_big2, "+1M"], check=False)
    assert rc != 0 and "lock" in err, (rc, err)
    rc, _, err = run(["qemu-io", "-f", "qcow2", "-c", "write -q 0 4k", t_big2], check=False)
    assert rc != 0 and "lock" in err, (rc, err)
    virsh_fails("vol-resize", "--pool", P_CRASH, "big2.qcow2", "2G", expect="in use")
    virsh_fails("vol-wipe", "--pool", P_CRASH, "big2.qcow2", expect="in use")
    # the checks ran while the copy did
    assert os.path.exists(tmp) and proc.poll() is None, "the copy ended before the checks"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    held = os.path.join(crash_ssd, "held.qcow2")
    assert backing_of(held) == os.path.join(rdir, expected_identity(t_big2))
    assert sha256(t_big2) == digest
    # nothing holds the template any more
    run(["qemu-img", "resize", "-q", "-f", "qcow2", t_big2, "+0"])
    virsh("vol-delete", "--pool", P_CRASH, "held.qcow2")
    virsh("vol-delete", "--pool", P_CRASH, "big2.qcow2")


copy_step("8d. a template is held like a backing file while its replica is copied: "
          "qemu-img resize, qemu-io writes, vol-resize and vol-wipe of it are refused",
          template_held_during_copy, "a replica copy is instant")


@suite.step("9a. delete, wipe, upload and resize of a template whose instances use only its replica are refused")
def _():
    make_template(t_prot, 64 * MiB, [(0x9a, 0, MiB)])
    virsh("pool-refresh", P_COPY)
    create_instance(P_COPY, "p1.qcow2", "prot.qcow2", 64 * MiB)
    create_instance(P_COPY, "p2.qcow2", "prot.qcow2", 64 * MiB)
    replica = backing_of(os.path.join(copy_ssd, "p1.qcow2"))
    # an overlay made by hand on the replica is a dependent too
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", replica, "-F", "qcow2",
         os.path.join(copy_ssd, "p3.qcow2")])
    virsh("pool-refresh", P_COPY)
    for name in ("p1.qcow2", "p2.qcow2", "p3.qcow2"):
        b = backing_of(os.path.join(copy_ssd, name))
        assert b == replica and b != t_prot, (name, b)
    digest = sha256(t_prot)
    names = "3 instance(s) depend on it: p1.qcow2, p2.qcow2, p3.qcow2"
    virsh_fails("vol-delete", "--pool", P_COPY, "prot.qcow2",
                expect="cannot delete template 'prot.qcow2': " + names)
    virsh_fails("vol-wipe", "--pool", P_COPY, "prot.qcow2",
                expect="cannot wipe template 'prot.qcow2': " + names)
    virsh_fails("vol-resize", "--pool", P_COPY, "prot.qcow2", "128M",
                expect="cannot resize template 'prot.qcow2': " + names)
    payload = os.path.join(root, "payload.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(64 * 1024))
    virsh_fails("vol-upload", "--pool", P_COPY, "prot.qcow2", payload,
                expect="cannot upload into template 'prot.qcow2': " + names)
    assert sha256(t_prot) == digest
    assert qemu_img_info(t_prot)["virtual-size"] == 64 * MiB
    state["prot_replica"] = replica


@suite.step("9b. once its instances are deleted, the template can be resized, uploaded, wiped and deleted")
def _():
    replica = state["prot_replica"]
    for name in ("p1.qcow2", "p2.qcow2", "p3.qcow2"):
        virsh("vol-delete", "--pool", P_COPY, name)
    assert not os.path.exists(replica), "replica kept after its last instance"
    assert not os.path.exists(replica_dir(copy_ssd, "prot.qcow2"))
    virsh("vol-resize", "--pool", P_COPY, "prot.qcow2", "128M")
    assert qemu_img_info(t_prot)["virtual-size"] == 128 * MiB
    payload = os.path.join(root, "payload.bin")
    virsh("vol-upload", "--pool", P_COPY, "prot.qcow2", payload)
    back = os.path.join(root, "back.bin")
    virsh("vol-download", "--pool", P_COPY, "prot.qcow2", back)
    with open(back, "rb") as f, open(payload, "rb") as g:
        assert f.read(64 * 1024) == g.read(), "upload did not land in the template"
    virsh("vol-wipe", "--pool", P_COPY, "prot.qcow2")
    with open(t_prot, "rb") as f:
        assert f.read(64 * 1024) == b"\0" * (64 * 1024), "wipe did not zero the template"
    virsh("vol-delete", "--pool", P_COPY, "prot.qcow2")
    assert not os.path.exists(t_prot)
    assert "prot.qcow2" not in vol_names(P_COPY)


@suite.step("9c. while vol-upload still streams into a template, instances of it, wipe, resize "
            "and a second upload are refused; afterwards they work")
def _():
    import libvirt
    primary, secondary = tiers("upload")
    new_pool(P_UPLOAD, primary, secondary, replica="policy='copy'")
    virsh("pool-start", P_UPLOAD)
    virsh("vol-create-as", P_UPLOAD, "up.img", str(8 * MiB), "--format", "raw")
    template = os.path.join(primary, "up.img")
    conn = libvirt.open("storage:///system")
    vol = conn.storagePoolLookupByName(P_UPLOAD).storageVolLookupByName("up.img")
    stream = conn.newStream(0)
    vol.upload(stream, 0, 8 * MiB, 0)
    try:
        stream.send(b"\x11" * MiB)
        busy = "template 'up.img' is still being written by vol-upload"
        virsh_fails("vol-create-as", P_UPLOAD, "u1.qcow2", str(8 * MiB), "--format", "qcow2",
                    "--backing-vol", "up.img", "--backing-vol-format", "raw", expect=busy)
        virsh_fails("vol-wipe", "--pool", P_UPLOAD, "up.img", expect=busy)
        virsh_fails("vol-resize", "--pool", P_UPLOAD, "up.img", "16M", expect=busy)
        virsh_fails("vol-delete", "--pool", P_UPLOAD, "up.img", expect=busy)
        payload = os.path.join(root, "payload.bin")
        virsh_fails("vol-upload", "--pool", P_UPLOAD, "up.img", payload, expect=busy)
        assert vol_names(P_UPLOAD) == ["up.img"], vol_names(P_UPLOAD)
        assert listdir(secondary) == [], listdir(secondary)
        for _ in range(7):
            stream.send(b"\x11" * MiB)
        stream.finish()
    except BaseException:
        stream.abort()
        raise
    finally:
        conn.close()
    # the daemon closes the stream's descriptor a moment after finish()
    deadline = time.monotonic() + 10
    while True:
        rc, _, err = run(["virsh", "-q", "vol-create-as", P_UPLOAD, "u1.qcow2", str(8 * MiB),
                          "--format", "qcow2", "--backing-vol", "up.img",
                          "--backing-vol-format", "raw"], check=False)
        if rc == 0 or time.monotonic() > deadline or "vol-upload" not in err:
            break
        time.sleep(0.1)
    assert rc == 0, err
    u1 = os.path.join(secondary, "u1.qcow2")
    assert_pattern(u1, 0x11, 0, 8 * MiB)
    assert sha256(backing_of(u1)) == sha256(template)


# ---- 10. flattened replica ----------------------------------------------

@suite.step("10. a template with its own backing file is replicated flattened")
def _():
    base = os.path.join(copy_hdd, "base.qcow2")
    layered = os.path.join(copy_hdd, "layered.qcow2")
    make_template(base, 64 * MiB, [(0x11, 0, 2 * MiB), (0x22, 16 * MiB, MiB)])
    make_template(layered, None, [(0x33, MiB, MiB), (0x44, 32 * MiB, MiB)], backing=base)
    assert qemu_img_info(layered)["backing-filename"] == base
    virsh("pool-refresh", P_COPY)
    mark = log_mark()
    create_instance(P_COPY, "l1.qcow2", "layered.qcow2", 64 * MiB)
    overlay = os.path.join(copy_ssd, "l1.qcow2")
    replica = backing_of(overlay)
    assert replica == os.path.join(replica_dir(copy_ssd, "layered.qcow2"),
                                   expected_identity(layered))
    assert qemu_img_info(overlay)["backing-filename-format"] == "qcow2"
    info = qemu_img_info(replica)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert "full-backing-filename" not in info, info
    qemu_img_compare(replica, layered)
    qemu_img_check(replica)
    for pattern, offset, length in ((0x11, 0, MiB), (0x33, MiB, MiB), (0x22, 16 * MiB, MiB),
                                    (0x44, 32 * MiB, MiB), (0x00, 48 * MiB, MiB)):
        assert_pattern(overlay, pattern, offset, length)
    assert_logged(mark, "making flattened replica '%s'" % replica)


# ---- 11. clone and wipe of an instance on a replica ----------------------

@suite.step("11a. vol-clone of an instance on an (older) replica keeps that replica as backing file")
def _():
    old = state["old_replica"]
    c1 = os.path.join(copy_ssd, "c1.qcow2")
    assert backing_of(c1) == old
    qemu_io(c1, "write -q -P 0x7c 2M 1M")
    virsh("vol-clone", "--pool", P_COPY, "c1.qcow2", "c1-clone.qcow2")
    clone = os.path.join(copy_ssd, "c1-clone.qcow2")
    assert backing_of(clone) == old, backing_of(clone)
    assert qemu_img_info(clone)["backing-filename-format"] == "qcow2"
    qemu_img_check(clone)
    assert_pattern(clone, 0x7c, 2 * MiB, MiB)
    assert_pattern(clone, 0xab, 0, 2 * MiB)
    assert_pattern(clone, 0x00, 8 * MiB, MiB)       # the old template's data
    xml = virsh("vol-dumpxml", "--pool", P_COPY, "c1-clone.qcow2")
    assert re.search(r"<backingStore>\s*<path>%s</path>" % re.escape(old), xml), xml
    replicas = pool_replicas(P_COPY)[1]
    assert {r["path"]: r["dependents"] for r in replicas if r["template"] == "win.qcow2"} == \
        {old: "3", state["new_replica"]: "1"}, replicas


@suite.step("11b. vol-wipe of an instance on a replica resets it and keeps the replica")
def _():
    old = state["old_replica"]
    c1 = os.path.join(copy_ssd, "c1.qcow2")
    virsh("vol-wipe", "--pool", P_COPY, "c1.qcow2")
    assert backing_of(c1) == old, backing_of(c1)
    qemu_img_check(c1)
    assert_pattern(c1, 0xab, 0, 4 * MiB)
    assert_pattern(c1, 0x00, 8 * MiB, MiB)
    assert qemu_img_info(c1)["virtual-size"] == 256 * MiB
    assert os.stat(c1).st_blocks * 512 < MiB, os.stat(c1).st_blocks
    assert_pattern(os.path.join(copy_ssd, "c1-clone.qcow2"), 0x7c, 2 * MiB, MiB)


@suite.step("11c. the old replica goes with its last instance; the template's new one stays")
def _():
    old, new = state["old_replica"], state["new_replica"]
    for name in ("c1.qcow2", "c2.qcow2"):
        virsh("vol-delete", "--pool", P_COPY, name)
        assert os.path.exists(old), "old replica removed while c1-clone uses it"
    virsh("vol-delete", "--pool", P_COPY, "c1-clone.qcow2")
    assert not os.path.exists(old)
    assert listdir(replica_dir(copy_ssd, "win.qcow2")) == [os.path.basename(new)]
    assert sha256(new) == state["win_sha"]
    assert sha256(t_win) == state["win_sha"]
    assert_replica_status(P_COPY, new, 1)


# ---- 12. invalid settings ---------------------------------------------------

@suite.step("12. pool-define with an unknown replica policy is refused and the daemon lives on")
def _():
    primary, secondary = tiers("bad")
    xml = os.path.join(root, "bad.xml")
    with open(xml, "w") as f:
        f.write("""<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>
  <name>%s</name>
  <source><dir path='%s'/></source>
  <target><path>%s</path></target>
  <stormpool:replica policy='mirror'/>
</pool>""" % (P_BAD, primary, secondary))
    suite.cleanup_pool(P_BAD)
    virsh_fails("pool-define", xml,
                expect="unknown replica policy 'mirror': expected none, copy, link, hot or auto")
    assert P_BAD not in virsh("pool-list", "--all", "--name")
    assert daemon_alive()
    assert pool_running(P_COPY)


# ---- teardown ----------------------------------------------------------------

@suite.step("teardown: every spr-rep pool, the tmpfs and the directories are gone")
def _():
    wait_no_replica_in_progress(eager_ssd)
    wait_no_replica_in_progress(crash_ssd)
    for pool in (P_AUTO, P_COPY, P_XFS, P_LINK, P_NONE, P_GC, P_EAGER, P_CRASH, P_BAD, P_UPLOAD):
        run(["virsh", "-q", "pool-destroy", pool], check=False)
        run(["virsh", "-q", "pool-undefine", pool], check=False)
    umount_fast()
    left = [p for p in virsh("pool-list", "--all", "--name").split() if p.startswith("spr-rep-")]
    assert left == [], left
    assert not os.path.ismount(fast)
    with open("/proc/mounts") as f:
        assert root not in f.read()
    run(["rm", "-rf", root])
    assert not os.path.exists(root)
    assert daemon_alive()
    print("# runtime %.1f s" % (time.monotonic() - started))


suite.finish()
