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

One scenario per test; each makes its own pools (spt-*), tiers and
templates through the fixtures of conftest.py, and runs alone:

    tools/virt-env exec /usr/bin/python3 -m pytest tests/integration/test_replicas.py -k eager

The tests marked disruptive stop or kill the shared daemons. A refusal is
checked by its libvirt error code, and the message it carries.
"""

import hashlib
import os
import re
import threading
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (LogMark, assert_pattern, backing_of, daemon_alive, listdir,
                              qemu_img_info, qemu_io, refused, run, sha256, tmp_files,
                              vol_names, wait_for)

MiB = 1024 * 1024
GiB = 1024 * MiB
NS = sp.NS
REPLICAS = sp.REPLICAS
BIG = GiB
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID      # SP_ERROR_IN_USE
NO_SPACE = libvirt.VIR_ERR_OPERATION_FAILED     # SP_ERROR_NO_SPACE
UNSUPPORTED = libvirt.VIR_ERR_CONFIG_UNSUPPORTED
XML_ERROR = libvirt.VIR_ERR_XML_ERROR

WIN_WRITES = [(0xab, 0, 4 * MiB), (0xcd, 100 * MiB, MiB)]


# ---- helpers ------------------------------------------------------------

def replica_dir(secondary, template_name):
    return os.path.join(secondary, REPLICAS, template_name)


def backing_template(overlay, secondary):
    """The template an instance backs onto, through a replica or not:
    (template file name, backing path)."""
    backing = backing_of(overlay)
    parent = os.path.dirname(backing)
    if os.path.dirname(parent) == os.path.join(secondary, REPLICAS):
        return os.path.basename(parent), backing
    return os.path.basename(backing), backing


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


def pool_replicas(virsh, pool):
    """(effective policy, [replica attributes]) from pool-dumpxml."""
    xml = virsh("pool-dumpxml", pool.name)
    node = ET.fromstring(xml).find("{%s}replicas" % NS)
    assert node is not None, "no <stormpool:replicas> in:\n" + xml
    return node.get("policy"), [dict(r.attrib) for r in node.findall("{%s}replica" % NS)]


def assert_replica_status(virsh, pool, path, dependents, policy="copy"):
    got_policy, replicas = pool_replicas(virsh, pool)
    assert got_policy == policy, (got_policy, replicas)
    mine = [r for r in replicas if r["path"] == path]
    assert len(mine) == 1, (path, replicas)
    st = os.stat(path)
    r = mine[0]
    assert r["dependents"] == str(dependents), (r, dependents)
    assert r["size"] == str(st.st_size), (r, st.st_size)
    assert r["allocation"] == str(st.st_blocks * 512), (r, st.st_blocks * 512)
    return replicas


def create_instance(virsh, pool, name, template, size):
    virsh("vol-create-as", pool.name, name, str(size), "--format", "qcow2",
          "--backing-vol", template, "--backing-vol-format", "qcow2")


def pool_running(pool_name):
    rc, out, _ = run(["virsh", "-q", "pool-info", pool_name], check=False)
    return rc == 0 and re.search(r"State:\s+running", out) is not None


def write_payload(workdir):
    payload = os.path.join(workdir, "payload.bin")
    with open(payload, "wb") as f:
        f.write(os.urandom(64 * 1024))
    return payload


def upload_refused(conn, pool, name, size, text):
    """vol-upload of @size bytes into @name is refused with @text."""
    stream = conn.newStream(0)
    try:
        with refused(IN_USE, text):
            pool.vol(name).upload(stream, 0, size, 0)
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass


# ---- shared setups: every test that needs one runs it itself ----------------

def auto_pool_with_instance(pool, template, virsh):
    """Policy 'auto' on one file system, tpl.qcow2 and its instance a1."""
    p = pool(start=False)
    t_auto = template(p.template_path("tpl.qcow2"), 64 * MiB,
                      [(0xa1, 0, 2 * MiB), (0xa2, 40 * MiB, MiB)])
    virsh("pool-start", p.name)
    create_instance(virsh, p, "a1.qcow2", "tpl.qcow2", 64 * MiB)
    return p, t_auto


def copy_pool_with_template(pool, template, virsh):
    """Policy 'copy' on one file system, with win.qcow2 (256 MiB, mostly
    holes)."""
    p = pool(replica="policy='copy'", start=False)
    # preallocation=metadata: a 256 MiB file that is mostly holes
    t_win = template(p.template_path("win.qcow2"), 256 * MiB, WIN_WRITES, prealloc=True)
    virsh("pool-start", p.name)
    return p, t_win


def changed_template_pool(pool, template, virsh, clone=False):
    """c1 and c2 on the replica of win.qcow2, then the template changed
    out of band and c3 on its new replica; with @clone, c1 written and
    cloned to c1-clone. Returns (pool, template, old replica, new replica)."""
    p, t_win = copy_pool_with_template(pool, template, virsh)
    create_instance(virsh, p, "c1.qcow2", "win.qcow2", 256 * MiB)
    create_instance(virsh, p, "c2.qcow2", "win.qcow2", 256 * MiB)
    old = backing_of(p.path("c1.qcow2"))
    virsh("pool-refresh", p.name)          # the module records the template's stamp
    time.sleep(0.01)
    qemu_io(t_win, "write -q -P 0x5e 8M 1M")        # behind libvirt's back
    create_instance(virsh, p, "c3.qcow2", "win.qcow2", 256 * MiB)
    new = backing_of(p.path("c3.qcow2"))
    assert new != old, "no new replica for the changed template"
    if clone:
        qemu_io(p.path("c1.qcow2"), "write -q -P 0x7c 2M 1M")
        virsh("vol-clone", "--pool", p.name, "c1.qcow2", "c1-clone.qcow2")
    return p, t_win, old, new


def none_pool_with_instances(pool, template, virsh):
    p = pool(replica="policy='none'", start=False)
    t_none = template(p.template_path("n.qcow2"), 16 * MiB, [(0x6e, 0, MiB)])
    virsh("pool-start", p.name)
    create_instance(virsh, p, "n1.qcow2", "n.qcow2", 16 * MiB)
    create_instance(virsh, p, "n2.qcow2", "n.qcow2", 16 * MiB)
    return p, t_none


def xfs_pool(pool, tiers, tmpfs):
    """A pool whose secondary tier is a 64 MiB tmpfs."""
    fast = tmpfs("64m", "fast")
    t = tiers("xfs", secondary=os.path.join(fast, "xfs-ssd"))
    return pool(tiers=t, start=False)


def eager_pool(pool, template, virsh, start=True):
    p = pool(replica="policy='copy' prepare='eager'", start=False)
    small = template(p.template_path("small.qcow2"), 16 * MiB, [(0x51, 0, MiB)])
    if start:
        virsh("pool-start", p.name)
    return p, small


def crash_pool(pool, template, virsh, big_template):
    """An autostarted 'copy' pool with the 1 GiB template big.qcow2 and an
    instance 'keep' of another. Returns (pool, big template, what every
    file holds before, the volume names)."""
    p = pool(replica="policy='copy'", start=False)
    os.makedirs(p.primary, exist_ok=True)
    t_crash_big = p.template_path("big.qcow2")
    os.link(big_template.path, t_crash_big)       # the same 1 GiB of random data
    small = template(p.template_path("small2.qcow2"), 16 * MiB, [(0x52, 0, MiB)])
    virsh("pool-start", p.name)
    virsh("pool-autostart", p.name)
    create_instance(virsh, p, "keep.qcow2", "small2.qcow2", 16 * MiB)
    keep = p.path("keep.qcow2")
    qemu_io(keep, "write -q -P 0x4b 2M 1M")
    before = {f: sha256(f) for f in (small, keep, backing_of(keep), t_crash_big)}
    vols = vol_names(p.name)
    assert vols == ["big.qcow2", "keep.qcow2", "small2.qcow2"]
    return p, t_crash_big, before, vols


# ---- 1. auto on one file system: a hard link -----------------------------

def test_auto_on_one_file_system_backs_onto_a_hard_link(pool, template, virsh):
    """1. policy 'auto' on one file system: the instance backs onto a
    hard-link replica."""
    p, t_auto = auto_pool_with_instance(pool, template, virsh)
    overlay = p.path("a1.qcow2")
    want = os.path.join(p.secondary, REPLICAS, "tpl.qcow2", expected_identity(t_auto))
    backing = backing_of(overlay)
    assert backing == want, (backing, want)
    assert backing_template(overlay, p.secondary) == ("tpl.qcow2", want)
    assert os.path.samefile(backing, t_auto), "replica is not a hard link of the template"
    assert os.stat(t_auto).st_nlink == 2
    assert replica_files(p.secondary) == [os.path.join("tpl.qcow2", os.path.basename(want))]
    assert_pattern(overlay, 0xa1, 0, 2 * MiB)
    assert_pattern(overlay, 0xa2, 40 * MiB, MiB)
    assert_replica_status(virsh, p, want, 1, policy="link")
    assert vol_names(p.name) == ["a1.qcow2", "tpl.qcow2"], vol_names(p.name)


# ---- 2. copy on one file system: a real, sparse copy ----------------------

def test_copy_is_sparse_with_its_own_inode(pool, template, virsh):
    """2. policy 'copy' on one file system: a sparse copy with its own
    inode and the template's data."""
    p, t_win = copy_pool_with_template(pool, template, virsh)
    win_sha = sha256(t_win)
    mark = LogMark()
    create_instance(virsh, p, "c1.qcow2", "win.qcow2", 256 * MiB)
    overlay = p.path("c1.qcow2")
    replica = backing_of(overlay)
    want = os.path.join(p.secondary, REPLICAS, "win.qcow2", expected_identity(t_win))
    assert replica == want, (replica, want)
    assert qemu_img_info(overlay)["backing-filename-format"] == "qcow2"
    assert not os.path.samefile(replica, t_win), "a 'copy' replica is the template's inode"
    assert os.stat(t_win).st_nlink == 1
    assert sha256(replica) == win_sha, "replica content differs from the template"
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
    mark.assert_logged("making copy replica '%s' of template '%s' (%d bytes)" %
                       (replica, t_win, ts.st_size))
    mark.assert_logged("replica '%s' made in" % replica)
    assert vol_names(p.name) == ["c1.qcow2", "win.qcow2"], vol_names(p.name)


# ---- 3. across file systems: auto copies, link is refused ----------------

def test_auto_with_secondary_on_tmpfs_copies(pool, tiers, tmpfs, template, virsh):
    """3a. policy 'auto' with the secondary tier on a tmpfs: a copy replica."""
    p = xfs_pool(pool, tiers, tmpfs)
    t = template(p.template_path("x.qcow2"), 32 * MiB, [(0x3c, 0, MiB), (0x3d, 20 * MiB, MiB)])
    virsh("pool-start", p.name)
    assert os.stat(p.primary).st_dev != os.stat(p.secondary).st_dev
    create_instance(virsh, p, "x1.qcow2", "x.qcow2", 32 * MiB)
    overlay = p.path("x1.qcow2")
    replica = backing_of(overlay)
    assert replica == os.path.join(p.secondary, REPLICAS, "x.qcow2", expected_identity(t))
    assert os.stat(replica).st_dev == os.stat(p.secondary).st_dev, "replica not on the tmpfs"
    assert os.stat(t).st_nlink == 1
    assert sha256(replica) == sha256(t)
    assert_pattern(overlay, 0x3c, 0, MiB)
    assert_pattern(overlay, 0x3d, 20 * MiB, MiB)
    assert_replica_status(virsh, p, replica, 1, policy="copy")


def test_replica_leaving_under_5_percent_free_is_refused(pool, tiers, tmpfs, template, virsh):
    """3a2. a replica copy that would leave less than 5% of the secondary
    tier free is refused; nothing is left behind."""
    p = xfs_pool(pool, tiers, tmpfs)
    virsh("pool-start", p.name)
    t = p.template_path("huge.qcow2")
    free = os.statvfs(p.secondary).f_bavail * os.statvfs(p.secondary).f_frsize
    # fits in what is free, but not with 5% of the 64 MiB tier kept free
    data = free - 2 * MiB
    template(t, 64 * MiB, [(0x3e, 0, data)])
    digest = sha256(t)
    virsh("pool-refresh", p.name)
    before = vol_names(p.name)
    with refused(NO_SPACE, "not enough space for a replica of '%s'" % t):
        p.create_volume("h1.qcow2", 64 * MiB, backing_vol="huge.qcow2")
    assert vol_names(p.name) == before, vol_names(p.name)
    rdir = replica_dir(p.secondary, "huge.qcow2")
    assert not os.path.exists(rdir) or listdir(rdir) == [], listdir(rdir)
    assert tmp_files(p.secondary) == []
    assert sha256(t) == digest
    # a template with a backing file is flattened by qemu-img: the same rule
    top = template(p.template_path("huge-top.qcow2"), 0, [(0x3f, 0, MiB)], backing=t)
    virsh("pool-refresh", p.name)
    with refused(NO_SPACE, "not enough space for a replica of '%s'" % top):
        p.create_volume("h2.qcow2", 64 * MiB, backing_vol="huge-top.qcow2")
    rdir = replica_dir(p.secondary, "huge-top.qcow2")
    assert not os.path.exists(rdir) or listdir(rdir) == [], listdir(rdir)
    assert tmp_files(p.secondary) == []
    assert pool_running(p.name) and daemon_alive()
    virsh("vol-delete", "--pool", p.name, "huge-top.qcow2")
    virsh("vol-delete", "--pool", p.name, "huge.qcow2")


def test_link_across_file_systems_fails_to_start(pool, tiers, tmpfs, virsh):
    """3b. policy 'link' across file systems: pool-start fails with a clear
    error."""
    fast = tmpfs("64m", "fast")
    t = tiers("link", secondary=os.path.join(fast, "link-ssd"))
    p = pool(replica="policy='link'", tiers=t, start=False)
    with refused(UNSUPPORTED, "replica policy 'link' needs both tiers on one file system") as r:
        p.obj.create(0)
    assert p.primary in r.message and p.secondary in r.message, r.message
    assert not pool_running(p.name)
    assert p.name in virsh("pool-list", "--inactive", "--name")
    assert daemon_alive()


# ---- 4. reuse ---------------------------------------------------------------

def test_second_instance_reuses_the_replica(pool, template, virsh):
    """4. the second instance reuses the replica; pool-dumpxml shows
    dependents='2' before and after a refresh."""
    p, _ = copy_pool_with_template(pool, template, virsh)
    create_instance(virsh, p, "c1.qcow2", "win.qcow2", 256 * MiB)
    replica = backing_of(p.path("c1.qcow2"))
    ino = os.stat(replica).st_ino
    assert_replica_status(virsh, p, replica, 1)
    create_instance(virsh, p, "c2.qcow2", "win.qcow2", 256 * MiB)
    assert backing_of(p.path("c2.qcow2")) == replica
    assert os.stat(replica).st_ino == ino, "the replica was made again"
    assert listdir(replica_dir(p.secondary, "win.qcow2")) == [os.path.basename(replica)]
    assert replica_files(p.secondary) == [os.path.join("win.qcow2", os.path.basename(replica))]
    # right after the vol-create, no refresh
    replicas = assert_replica_status(virsh, p, replica, 2)
    assert len(replicas) == 1, replicas
    virsh("pool-refresh", p.name)
    replicas = assert_replica_status(virsh, p, replica, 2)
    assert len(replicas) == 1 and replicas[0]["template"] == "win.qcow2", replicas


# ---- 5. identity change -----------------------------------------------------

def test_changed_template_gets_a_new_replica(pool, template, virsh):
    """5a. a template changed out of band gets a new replica; old instances
    keep theirs."""
    p, t_win = copy_pool_with_template(pool, template, virsh)
    create_instance(virsh, p, "c1.qcow2", "win.qcow2", 256 * MiB)
    create_instance(virsh, p, "c2.qcow2", "win.qcow2", 256 * MiB)
    old = backing_of(p.path("c1.qcow2"))
    old_sha = sha256(old)
    virsh("pool-refresh", p.name)          # the module records the template's stamp
    mark = LogMark()
    time.sleep(0.01)
    qemu_io(t_win, "write -q -P 0x5e 8M 1M")        # behind libvirt's back
    new_identity = expected_identity(t_win)
    assert new_identity != os.path.basename(old)
    create_instance(virsh, p, "c3.qcow2", "win.qcow2", 256 * MiB)
    new = backing_of(p.path("c3.qcow2"))
    assert new == os.path.join(replica_dir(p.secondary, "win.qcow2"), new_identity), (new, old)
    assert sorted(listdir(replica_dir(p.secondary, "win.qcow2"))) == \
        sorted([os.path.basename(old), new_identity])
    for name in ("c1.qcow2", "c2.qcow2"):
        assert backing_of(p.path(name)) == old, name
    assert sha256(old) == old_sha, "the old replica changed"
    assert sha256(new) == sha256(t_win)
    assert_pattern(p.path("c1.qcow2"), 0x00, 8 * MiB, MiB)
    assert_pattern(p.path("c3.qcow2"), 0x5e, 8 * MiB, MiB)
    assert_pattern(p.path("c3.qcow2"), 0xab, 0, 4 * MiB)
    with refused(IN_USE, "cannot delete template 'win.qcow2': 3 instance(s) depend on it: "
                         "c1.qcow2, c2.qcow2, c3.qcow2"):
        p.vol("win.qcow2").delete(0)
    # copies are safe: the refresh notices the change but names no one at risk
    virsh("pool-refresh", p.name)
    mark.assert_logged("template '%s' changed; no instance depends on it directly" % t_win)
    at_risk = mark.lines("behind libvirt's back", t_win)
    assert at_risk == [], at_risk
    replicas = pool_replicas(virsh, p)[1]
    assert {(r["path"], r["dependents"]) for r in replicas} == {(old, "2"), (new, "1")}, replicas


def test_none_policy_logs_instances_at_risk(pool, template, virsh):
    """5b. policy 'none': an out-of-band template change makes refresh log
    the instances at risk."""
    p, t_none = none_pool_with_instances(pool, template, virsh)
    for name in ("n1.qcow2", "n2.qcow2"):
        assert backing_of(p.path(name)) == t_none
    assert not os.path.exists(os.path.join(p.secondary, REPLICAS))
    assert pool_replicas(virsh, p) == ("none", [])
    virsh("pool-refresh", p.name)
    mark = LogMark()
    virsh("pool-refresh", p.name)
    # (the daemons are shared: only this pool's lines count)
    assert mark.lines("behind libvirt's back", p.primary) == [], "error logged without a change"
    time.sleep(0.01)
    qemu_io(t_none, "write -q -P 0x6f 1M 1M")
    mark = LogMark()
    virsh("pool-refresh", p.name)
    want = ("template '%s' changed behind libvirt's back while 2 instance(s) depend on it "
            "directly; their data is at risk: " % t_none)
    if mark.checkable(4):
        log = mark.since()
        lines = [line for line in log.splitlines() if want in line]
        assert len(lines) == 1 and " error : " in lines[0], log[-3000:]
        names = lines[0].split(want, 1)[1].strip().split(", ")
        assert sorted(names) == ["n1.qcow2", "n2.qcow2"], lines[0]
    # the stamp is updated: the next refresh is quiet again
    mark = LogMark()
    virsh("pool-refresh", p.name)
    assert mark.lines("behind libvirt's back", p.primary) == []


def test_template_changed_by_the_pool_raises_no_alarm(pool, template, virsh):
    """5b2. a template changed by the pool itself (vol-resize) raises no
    alarm at the next refresh."""
    p = pool(replica="policy='none'", start=False)
    template(p.template_path("s.qcow2"), 16 * MiB, [(0x51, 0, MiB)])
    virsh("pool-start", p.name)
    virsh("pool-refresh", p.name)
    virsh("vol-resize", "--pool", p.name, "s.qcow2", "32M")
    create_instance(virsh, p, "s1.qcow2", "s.qcow2", 32 * MiB)
    mark = LogMark()
    virsh("pool-refresh", p.name)
    lines = mark.lines("behind libvirt's back", p.primary)
    assert lines == [], lines
    virsh("vol-delete", "--pool", p.name, "s1.qcow2")
    virsh("vol-delete", "--pool", p.name, "s.qcow2")
    virsh("pool-destroy", p.name)
    virsh("pool-undefine", p.name)


@pytest.mark.disruptive
def test_template_changed_while_the_daemon_was_down(pool, template, virsh, daemons):
    """5b3. a template changed while the daemon was down is reported by the
    first refresh after the restart."""
    p, t_none = none_pool_with_instances(pool, template, virsh)
    virsh("pool-refresh", p.name)
    assert os.path.exists(os.path.join(p.secondary, ".stormpool-template-stamps"))
    assert "stormpool-template-stamps" not in " ".join(vol_names(p.name))
    daemons.stop()
    try:
        time.sleep(0.01)
        qemu_io(t_none, "write -q -P 0x70 2M 1M")
        mark = LogMark()
    finally:
        daemons.start()
    wait_for(lambda: pool_running(p.name), 30, "the pool to run again after the restart")
    mark.assert_logged("template '%s' changed behind libvirt's back while 2 instance(s) "
                       "depend on it directly; their data is at risk: n1.qcow2, n2.qcow2"
                       % t_none, level=4, count=1)
    mark = LogMark()
    virsh("pool-refresh", p.name)
    assert mark.lines("behind libvirt's back", p.primary) == []


def test_auto_link_instances_at_risk_when_template_changes(pool, template, virsh):
    """5c. policy 'auto' (link): a template changed in place puts the
    hard-link instances at risk."""
    p, t_auto = auto_pool_with_instance(pool, template, virsh)
    virsh("pool-refresh", p.name)
    time.sleep(0.01)
    qemu_io(t_auto, "write -q -P 0xa3 4M 1M")
    mark = LogMark()
    virsh("pool-refresh", p.name)
    mark.assert_logged("template '%s' changed behind libvirt's back while 1 instance(s) "
                       "depend on it directly; their data is at risk: a1.qcow2" % t_auto,
                       level=4)


# ---- 6. garbage collection --------------------------------------------------

def gc_pool(pool, template, virsh):
    p = pool(replica="policy='copy'", start=False)
    template(p.template_path("g.qcow2"), 16 * MiB, [(0x67, 0, MiB)])
    virsh("pool-start", p.name)
    return p


def test_last_instance_deleted_removes_the_replica(pool, template, virsh):
    """6a. deleting the last instance of a replica removes it and its
    directories."""
    p = gc_pool(pool, template, virsh)
    create_instance(virsh, p, "g1.qcow2", "g.qcow2", 16 * MiB)
    create_instance(virsh, p, "g2.qcow2", "g.qcow2", 16 * MiB)
    replica = backing_of(p.path("g1.qcow2"))
    assert backing_of(p.path("g2.qcow2")) == replica
    assert_replica_status(virsh, p, replica, 2)
    virsh("vol-delete", "--pool", p.name, "g1.qcow2")
    assert os.path.exists(replica), "replica removed while an instance uses it"
    assert_replica_status(virsh, p, replica, 1)
    virsh("vol-delete", "--pool", p.name, "g2.qcow2")
    assert not os.path.exists(replica), "replica kept after its last instance"
    assert not os.path.exists(os.path.dirname(replica))
    assert not os.path.exists(os.path.join(p.secondary, REPLICAS)), listdir(p.secondary)
    assert listdir(p.secondary) == []
    assert pool_replicas(virsh, p) == ("copy", [])
    assert vol_names(p.name) == ["g.qcow2"]


def test_refresh_removes_a_replica_left_unused(pool, template, virsh):
    """6b. an instance removed behind libvirt's back leaves a replica that
    pool-refresh removes."""
    p = gc_pool(pool, template, virsh)
    create_instance(virsh, p, "g3.qcow2", "g.qcow2", 16 * MiB)
    replica = backing_of(p.path("g3.qcow2"))
    assert os.path.exists(replica)
    os.unlink(p.path("g3.qcow2"))
    assert os.path.exists(replica)
    mark = LogMark()
    virsh("pool-refresh", p.name)
    assert not os.path.exists(replica), "unused replica kept by the refresh"
    assert not os.path.exists(os.path.join(p.secondary, REPLICAS)), listdir(p.secondary)
    mark.assert_logged("removed replica '%s' of template 'g.qcow2': nothing uses it any more"
                       % replica)
    assert pool_replicas(virsh, p) == ("copy", [])
    assert vol_names(p.name) == ["g.qcow2"]


# ---- 7. prepare='eager' -----------------------------------------------------

def test_eager_copy_at_start_and_vol_create_waits_for_it(pool, template, virsh, reflinks,
                                                         big_template):
    """7a. prepare='eager': replicas made in the background at pool-start; a
    vol-create during the copy waits for it."""
    p, _ = eager_pool(pool, template, virsh, start=False)
    t_big = p.template_path("big.qcow2")
    os.link(big_template.path, t_big)
    rdir = replica_dir(p.secondary, "big.qcow2")
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
        mark = LogMark()
        virsh("pool-start", p.name, wait=False)
        if reflinks:
            print("# the file system reflinks: the eager copy is instant, not caught under way")
        else:
            wait_for(lambda: seen, 5, "the eager copy's temporary file")
            assert not os.path.exists(big_replica), "1 GiB copied before it could be seen"
            # a refresh during the copy leaves the copy's temporary file alone
            virsh("pool-refresh", p.name, wait=False)
            assert tmp_files(rdir) and not os.path.exists(big_replica), \
                "the copy ended too early for this test"
        t0 = time.monotonic()
        create_instance(virsh, p, "e1.qcow2", "big.qcow2", BIG)
        waited = time.monotonic() - t0
        there_at_return = os.path.exists(big_replica)
    finally:
        stop.set()
        watcher.join()
    print("# vol-create waited %.2f s for the eager replica; temporary files seen: %s" %
          (waited, sorted(seen)))
    assert there_at_return, "vol-create returned before the replica it backs onto existed"
    assert len(seen) == 1 or (reflinks and not seen), \
        "more than one copy of the replica was made: %s" % sorted(seen)
    overlay = p.path("e1.qcow2")
    assert backing_of(overlay) == big_replica
    assert listdir(rdir) == [os.path.basename(big_replica)], listdir(rdir)
    assert sha256(big_replica) == big_template.sha256, "instance backs onto an incomplete replica"
    qemu_img_check(overlay)
    mark.assert_logged("making copy replica '%s'" % big_replica, count=1)
    mark.assert_logged("replica '%s' made in" % big_replica, count=1)
    if not reflinks:
        # a 1 GiB copy reports its progress every tenth
        mark.assert_logged("replica '%s': 50%% copied" % big_replica, count=1)
    assert mark.lines("cannot prepare replica", p.primary) == []


def test_eager_replica_of_unused_template_survives_refreshes(pool, template, virsh):
    """7b. prepare='eager': an unused template's replica appears on its own
    and survives refreshes."""
    p, small = eager_pool(pool, template, virsh, start=False)
    # a used template next to it (the scenario's 1 GiB one needs no such size here)
    template(p.template_path("big.qcow2"), 16 * MiB, [(0x42, 0, MiB)])
    virsh("pool-start", p.name)
    create_instance(virsh, p, "e1.qcow2", "big.qcow2", 16 * MiB)
    replica = os.path.join(replica_dir(p.secondary, "small.qcow2"), expected_identity(small))
    wait_for(lambda: os.path.exists(replica), 10, replica)
    ino = os.stat(replica).st_ino
    assert sha256(replica) == sha256(small)
    virsh("pool-refresh", p.name)
    virsh("pool-refresh", p.name)
    assert os.path.exists(replica) and os.stat(replica).st_ino == ino
    replicas = assert_replica_status(virsh, p, replica, 0)
    assert {r["template"]: r["dependents"] for r in replicas} == \
        {"big.qcow2": "1", "small.qcow2": "0"}, replicas


def test_eager_keeps_current_replica_after_last_instance(pool, template, virsh):
    """7c. prepare='eager': deleting the last instance keeps the template's
    current replica."""
    p, small = eager_pool(pool, template, virsh)
    replica = os.path.join(replica_dir(p.secondary, "small.qcow2"), expected_identity(small))
    create_instance(virsh, p, "es1.qcow2", "small.qcow2", 16 * MiB)
    assert backing_of(p.path("es1.qcow2")) == replica
    before = os.stat(replica)
    mark = LogMark()
    virsh("vol-delete", "--pool", p.name, "es1.qcow2")
    kept = os.path.exists(replica)
    # whatever happened, the next refresh must leave the current replica there
    virsh("pool-refresh", p.name)
    wait_for(lambda: os.path.exists(replica), 10, "the eager replica after a refresh")
    after = os.stat(replica)
    remade = (after.st_ino, after.st_ctime_ns) != (before.st_ino, before.st_ctime_ns)
    # README: a replica "is removed when its last instance is deleted ...,
    # except the current replica of a template under prepare='eager'"
    assert kept, ("vol-delete of the last instance removed the current replica of a "
                  "template under prepare='eager'%s" %
                  ("; the next pool-refresh made it again" if remade else ""))
    assert not remade, "the eager replica was made again"
    mark.assert_logged("making copy replica '%s'" % replica, count=0)


def test_eager_copy_stopped_by_pool_destroy(pool, template, virsh, slow_copy, big_template):
    """7d. prepare='eager': pool-destroy stops a replica copy under way;
    pool-start makes it again."""
    p, _ = eager_pool(pool, template, virsh)
    t_big3 = p.template_path("big3.qcow2")
    run(["cp", "--sparse=always", "--reflink=never", big_template.path, t_big3])
    rdir = replica_dir(p.secondary, "big3.qcow2")
    replica = os.path.join(rdir, expected_identity(t_big3))
    mark = LogMark()
    virsh("pool-refresh", p.name, wait=False)      # queues the eager copy
    wait_for(lambda: tmp_files(rdir), 10, "the eager copy's temporary file")
    virsh("pool-destroy", p.name)
    # the copy stops within one 64 MiB chunk and takes its file with it;
    # pool-destroy waits for that
    assert not os.path.exists(rdir) or not tmp_files(rdir), tmp_files(rdir)
    time.sleep(1)
    assert not os.path.exists(replica), "the copy went on after pool-destroy"
    mark.assert_logged("replica '%s': copy stopped after" % replica, count=1)
    mark.assert_logged("cannot prepare replica", level=4, count=0)
    # started again, the pool makes the replica after all
    virsh("pool-start", p.name)
    wait_for(lambda: os.path.exists(replica), 60, "the eager replica after pool-start")
    assert sha256(replica) == big_template.sha256
    virsh("vol-delete", "--pool", p.name, "big3.qcow2")
    virsh("pool-refresh", p.name)


def test_template_delete_removes_its_unused_replicas(pool, template, virsh):
    """7e. vol-delete of a template removes its unused replicas at once."""
    p, small = eager_pool(pool, template, virsh)
    rdir = replica_dir(p.secondary, "small.qcow2")
    replica = os.path.join(rdir, expected_identity(small))
    wait_for(lambda: os.path.exists(replica), 30, "the eager replica of small.qcow2")
    mark = LogMark()
    virsh("vol-delete", "--pool", p.name, "small.qcow2")
    # no refresh in between: the replica and its directory are gone
    assert not os.path.exists(rdir), listdir(rdir)
    mark.assert_logged("removed replica '%s'" % replica)
    assert "small.qcow2" not in [r["template"] for r in pool_replicas(virsh, p)[1]]


# ---- 8. kill -9 during a replica copy --------------------------------------

def vol_create_after_crash(virsh, p, t_crash_big, big_sha):
    """8c. the vol-create of the 1 GiB template succeeds on a complete
    replica (again, after a crash)."""
    victim = p.path("victim.qcow2")
    if os.path.exists(victim):
        virsh("vol-delete", "--pool", p.name, "victim.qcow2")
    create_instance(virsh, p, "victim.qcow2", "big.qcow2", BIG)
    full = os.path.join(replica_dir(p.secondary, "big.qcow2"), expected_identity(t_crash_big))
    assert backing_of(victim) == full
    assert listdir(replica_dir(p.secondary, "big.qcow2")) == [os.path.basename(full)]
    assert sha256(full) == big_sha
    qemu_img_check(victim)
    assert sha256(t_crash_big) == big_sha


@pytest.mark.disruptive
@pytest.mark.time_limit(600)
def test_kill_storaged_during_replica_copy(pool, template, virsh, slow_copy, big_template,
                                          daemons, children):
    """8b. kill -9 virtstoraged while vol-create copies a replica: no half
    replica, everything intact; then (8c) the same vol-create succeeds."""
    p, t_crash_big, crash_before, crash_vols = crash_pool(pool, template, virsh, big_template)
    # another running pool, not autostarted: running again after the restart
    other = pool(suffix="other")
    rdir = replica_dir(p.secondary, "big.qcow2")
    full = os.path.join(rdir, expected_identity(t_crash_big))
    mark = LogMark()
    proc = children.start("vol-create-as", p.name, "victim.qcow2", str(BIG), "--format",
                          "qcow2", "--backing-vol", "big.qcow2", "--backing-vol-format", "qcow2")
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
    pid = daemons.storaged_pid()
    try:
        try:
            partial = os.path.getsize(tmp)
        except OSError:
            partial = -1                # renamed (or gone) an instant ago
        os.kill(pid, 9)
        try:
            out, err = proc.communicate(timeout=30)
        except Exception:
            proc.kill()
            out, err = proc.communicate()
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10, "virtstoraged to die")
        print("# killed virtstoraged with %d of %d bytes copied; virsh rc %d: %s" %
              (partial, os.path.getsize(t_crash_big), proc.returncode, err.strip()))
        assert os.path.exists(tmp), "temporary file vanished before the restart"
    finally:
        daemons.start()
    wait_for(lambda: pool_running(p.name), 30, "the autostarted pool to run again")
    victim = p.path("victim.qcow2")
    # the refresh at start removed the half copy, in its background work
    wait_for(lambda: not os.path.exists(tmp), 60, "the half replica %s to go" % tmp)
    assert tmp_files(rdir) == [] and tmp_files(p.secondary) == []
    mark.assert_logged("removed '%s' left behind by an interrupted volume creation" % tmp,
                       level=3)
    left = listdir(rdir)
    assert left in ([], [os.path.basename(full)]), left
    if left:
        assert sha256(full) == big_template.sha256, "a half replica was kept under its final name"
    if proc.returncode != 0:
        assert not left, "a complete replica but the create failed"
        assert not os.path.exists(victim), "an instance was created by a failed vol-create"
        assert vol_names(p.name) == crash_vols, vol_names(p.name)
    else:
        assert os.path.exists(victim) and backing_of(victim) == full
        qemu_img_check(victim)
    for path, digest in crash_before.items():
        assert sha256(path) == digest, "%s changed" % path
    keep = p.path("keep.qcow2")
    qemu_img_check(keep)
    assert_pattern(keep, 0x4b, 2 * MiB, MiB)
    assert_pattern(keep, 0x52, 0, MiB)
    assert daemon_alive()
    assert daemons.status() == 0
    for name in (p.name, other.name):
        assert pool_running(name), "%s not running after the restart" % name
    vol_create_after_crash(virsh, p, t_crash_big, big_template.sha256)


@pytest.mark.time_limit(600)
def test_vol_create_of_big_template_makes_a_complete_replica(pool, template, virsh,
                                                             big_template):
    """8c. (after the crash of 8b) the same vol-create succeeds on a
    complete replica; here on a pool that saw no crash."""
    p, t_crash_big, _, _ = crash_pool(pool, template, virsh, big_template)
    vol_create_after_crash(virsh, p, t_crash_big, big_template.sha256)


# ---- 9. protection through replicas ----------------------------------------

def test_template_held_while_its_replica_is_copied(pool, virsh, slow_copy, big_template,
                                                   children):
    """8d. a template is held like a backing file while its replica is
    copied: qemu-img resize, qemu-io writes, vol-resize and vol-wipe of it
    are refused."""
    p = pool(replica="policy='copy'")
    t_big2 = p.template_path("big2.qcow2")
    run(["cp", "--sparse=always", "--reflink=never", big_template.path, t_big2])
    virsh("pool-refresh", p.name)
    digest = sha256(t_big2)
    rdir = replica_dir(p.secondary, "big2.qcow2")
    proc = children.start("vol-create-as", p.name, "held.qcow2", str(BIG), "--format",
                          "qcow2", "--backing-vol", "big2.qcow2", "--backing-vol-format",
                          "qcow2")
    wait_for(lambda: tmp_files(rdir) or proc.poll() is not None, 30,
             "the replica copy to start")
    tmp = os.path.join(rdir, tmp_files(rdir)[0])
    rc, _, err = run(["qemu-img", "resize", "-q", "-f", "qcow2", t_big2, "+1M"], check=False)
    assert rc != 0 and "lock" in err, (rc, err)
    rc, _, err = run(["qemu-io", "-f", "qcow2", "-c", "write -q 0 4k", t_big2], check=False)
    assert rc != 0 and "lock" in err, (rc, err)
    with refused(IN_USE, "in use"):
        p.vol("big2.qcow2").resize(2 * GiB, 0)
    with refused(IN_USE, "in use"):
        p.vol("big2.qcow2").wipe(0)
    # the checks ran while the copy did
    assert os.path.exists(tmp) and proc.poll() is None, "the copy ended before the checks"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    held = p.path("held.qcow2")
    assert backing_of(held) == os.path.join(rdir, expected_identity(t_big2))
    assert sha256(t_big2) == digest
    # nothing holds the template any more
    run(["qemu-img", "resize", "-q", "-f", "qcow2", t_big2, "+0"])
    virsh("vol-delete", "--pool", p.name, "held.qcow2")
    virsh("vol-delete", "--pool", p.name, "big2.qcow2")


def protected_template(pool, template, virsh):
    """prot.qcow2 with instances p1, p2 (vol-create) and p3 (an overlay made
    by hand) on its replica. Returns (pool, template, replica)."""
    p, _ = copy_pool_with_template(pool, template, virsh)
    t_prot = template(p.template_path("prot.qcow2"), 64 * MiB, [(0x9a, 0, MiB)])
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "p1.qcow2", "prot.qcow2", 64 * MiB)
    create_instance(virsh, p, "p2.qcow2", "prot.qcow2", 64 * MiB)
    replica = backing_of(p.path("p1.qcow2"))
    # an overlay made by hand on the replica is a dependent too
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", replica, "-F", "qcow2",
         p.path("p3.qcow2")])
    virsh("pool-refresh", p.name)
    return p, t_prot, replica


def test_template_used_only_through_its_replica_is_protected(conn, pool, template, virsh,
                                                             workdir):
    """9a. delete, wipe and resize of a template whose instances use only
    its replica are refused; an upload is a new version
    (test_template_versions.py), and one that is no image of the
    template's format leaves it unchanged."""
    p, t_prot, replica = protected_template(pool, template, virsh)
    for name in ("p1.qcow2", "p2.qcow2", "p3.qcow2"):
        b = backing_of(p.path(name))
        assert b == replica and b != t_prot, (name, b)
    digest = sha256(t_prot)
    names = "3 instance(s) depend on it: p1.qcow2, p2.qcow2, p3.qcow2"
    with refused(IN_USE, "cannot delete template 'prot.qcow2': " + names):
        p.vol("prot.qcow2").delete(0)
    with refused(IN_USE, "cannot wipe template 'prot.qcow2': " + names):
        p.vol("prot.qcow2").wipe(0)
    with refused(IN_USE, "cannot resize template 'prot.qcow2': " + names):
        p.vol("prot.qcow2").resize(128 * MiB, 0)
    payload = write_payload(workdir)
    virsh("vol-upload", "--pool", p.name, "prot.qcow2", payload)
    virsh("pool-refresh", p.name)
    assert sha256(t_prot) == digest
    assert qemu_img_info(t_prot)["virtual-size"] == 64 * MiB


def test_template_free_again_once_its_instances_are_deleted(pool, template, virsh, workdir):
    """9b. once its instances are deleted, the template can be resized,
    uploaded, wiped and deleted."""
    p, t_prot, replica = protected_template(pool, template, virsh)
    for name in ("p1.qcow2", "p2.qcow2", "p3.qcow2"):
        virsh("vol-delete", "--pool", p.name, name)
    assert not os.path.exists(replica), "replica kept after its last instance"
    assert not os.path.exists(replica_dir(p.secondary, "prot.qcow2"))
    virsh("vol-resize", "--pool", p.name, "prot.qcow2", "128M")
    assert qemu_img_info(t_prot)["virtual-size"] == 128 * MiB
    payload = write_payload(workdir)
    virsh("vol-upload", "--pool", p.name, "prot.qcow2", payload)
    back = os.path.join(workdir, "back.bin")
    virsh("vol-download", "--pool", p.name, "prot.qcow2", back)
    with open(back, "rb") as f, open(payload, "rb") as g:
        assert f.read(64 * 1024) == g.read(), "upload did not land in the template"
    virsh("vol-wipe", "--pool", p.name, "prot.qcow2")
    with open(t_prot, "rb") as f:
        assert f.read(64 * 1024) == b"\0" * (64 * 1024), "wipe did not zero the template"
    virsh("vol-delete", "--pool", p.name, "prot.qcow2")
    assert not os.path.exists(t_prot)
    assert "prot.qcow2" not in vol_names(p.name)


def test_template_being_uploaded_refuses_changes_and_instances(conn, pool, virsh, workdir):
    """9c. while vol-upload still streams into a template, instances of it,
    wipe, resize and a second upload are refused; afterwards they work."""
    p = pool(replica="policy='copy'")
    virsh("vol-create-as", p.name, "up.img", str(8 * MiB), "--format", "raw")
    t = p.template_path("up.img")
    payload = write_payload(workdir)
    up_conn = libvirt.open("storage:///system")
    vol = up_conn.storagePoolLookupByName(p.name).storageVolLookupByName("up.img")
    stream = up_conn.newStream(0)
    vol.upload(stream, 0, 8 * MiB, 0)
    try:
        stream.send(b"\x11" * MiB)
        busy = "template 'up.img' is still being written by vol-upload"
        with refused(IN_USE, busy):
            p.create_volume("u1.qcow2", 8 * MiB, backing_vol="up.img", backing_format="raw")
        with refused(IN_USE, busy):
            p.vol("up.img").wipe(0)
        with refused(IN_USE, busy):
            p.vol("up.img").resize(16 * MiB, 0)
        with refused(IN_USE, busy):
            p.vol("up.img").delete(0)
        upload_refused(conn, p, "up.img", os.path.getsize(payload), busy)
        assert vol_names(p.name) == ["up.img"], vol_names(p.name)
        assert listdir(p.secondary) == [], listdir(p.secondary)
        for _ in range(7):
            stream.send(b"\x11" * MiB)
        stream.finish()
    except BaseException:
        stream.abort()
        raise
    finally:
        up_conn.close()
    # the daemon closes the stream's descriptor a moment after finish()
    deadline = time.monotonic() + 10
    while True:
        rc, _, err = run(["virsh", "-q", "vol-create-as", p.name, "u1.qcow2", str(8 * MiB),
                          "--format", "qcow2", "--backing-vol", "up.img",
                          "--backing-vol-format", "raw"], check=False)
        if rc == 0 or time.monotonic() > deadline or "vol-upload" not in err:
            break
        time.sleep(0.1)
    assert rc == 0, err
    u1 = p.path("u1.qcow2")
    assert_pattern(u1, 0x11, 0, 8 * MiB)
    assert sha256(backing_of(u1)) == sha256(t)


# ---- 10. flattened replica ----------------------------------------------

def test_template_with_a_backing_file_is_replicated_flattened(pool, template, virsh):
    """10. a template with its own backing file is replicated flattened."""
    p = pool(replica="policy='copy'")
    base = template(p.template_path("base.qcow2"), 64 * MiB,
                    [(0x11, 0, 2 * MiB), (0x22, 16 * MiB, MiB)])
    layered = template(p.template_path("layered.qcow2"), None,
                       [(0x33, MiB, MiB), (0x44, 32 * MiB, MiB)], backing=base)
    assert qemu_img_info(layered)["backing-filename"] == base
    virsh("pool-refresh", p.name)
    mark = LogMark()
    create_instance(virsh, p, "l1.qcow2", "layered.qcow2", 64 * MiB)
    overlay = p.path("l1.qcow2")
    replica = backing_of(overlay)
    assert replica == os.path.join(replica_dir(p.secondary, "layered.qcow2"),
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
    mark.assert_logged("making flattened replica '%s'" % replica)


# ---- 11. clone and wipe of an instance on a replica ----------------------

def test_clone_of_instance_on_older_replica_keeps_it(pool, template, virsh):
    """11a. vol-clone of an instance on an (older) replica keeps that
    replica as backing file."""
    p, _, old, new = changed_template_pool(pool, template, virsh)
    c1 = p.path("c1.qcow2")
    assert backing_of(c1) == old
    qemu_io(c1, "write -q -P 0x7c 2M 1M")
    virsh("vol-clone", "--pool", p.name, "c1.qcow2", "c1-clone.qcow2")
    clone = p.path("c1-clone.qcow2")
    assert backing_of(clone) == old, backing_of(clone)
    assert qemu_img_info(clone)["backing-filename-format"] == "qcow2"
    qemu_img_check(clone)
    assert_pattern(clone, 0x7c, 2 * MiB, MiB)
    assert_pattern(clone, 0xab, 0, 2 * MiB)
    assert_pattern(clone, 0x00, 8 * MiB, MiB)       # the old template's data
    xml = virsh("vol-dumpxml", "--pool", p.name, "c1-clone.qcow2")
    assert re.search(r"<backingStore>\s*<path>%s</path>" % re.escape(old), xml), xml
    replicas = pool_replicas(virsh, p)[1]
    assert {r["path"]: r["dependents"] for r in replicas if r["template"] == "win.qcow2"} == \
        {old: "3", new: "1"}, replicas


def test_wipe_of_instance_on_old_replica_moves_it_to_the_new_one(pool, template, virsh):
    """11b. vol-wipe of an instance on the replica of the template's old
    contents resets it onto the template as it is now (its new replica:
    a wipe recomposes onto the newest version, stormpool(7), TEMPLATE
    VERSIONS); the old replica stays for c2 and the clone."""
    p, _, old, new = changed_template_pool(pool, template, virsh, clone=True)
    c1 = p.path("c1.qcow2")
    virsh("vol-wipe", "--pool", p.name, "c1.qcow2")
    assert backing_of(c1) == new, backing_of(c1)
    assert os.path.exists(old)
    qemu_img_check(c1)
    assert_pattern(c1, 0xab, 0, 4 * MiB)
    assert_pattern(c1, 0x5e, 8 * MiB, MiB)
    assert qemu_img_info(c1)["virtual-size"] == 256 * MiB
    assert os.stat(c1).st_blocks * 512 < MiB, os.stat(c1).st_blocks
    assert_pattern(p.path("c1-clone.qcow2"), 0x7c, 2 * MiB, MiB)


def test_old_replica_goes_with_its_last_instance(pool, template, virsh):
    """11c. the old replica goes with its last instance; the template's new
    one stays."""
    p, t_win, old, new = changed_template_pool(pool, template, virsh, clone=True)
    win_sha = sha256(t_win)
    for name in ("c1.qcow2", "c2.qcow2"):
        virsh("vol-delete", "--pool", p.name, name)
        assert os.path.exists(old), "old replica removed while c1-clone uses it"
    virsh("vol-delete", "--pool", p.name, "c1-clone.qcow2")
    assert not os.path.exists(old)
    assert listdir(replica_dir(p.secondary, "win.qcow2")) == [os.path.basename(new)]
    assert sha256(new) == win_sha
    assert sha256(t_win) == win_sha
    assert_replica_status(virsh, p, new, 1)


# ---- 12. invalid settings ---------------------------------------------------

def test_unknown_replica_policy_is_refused(conn, pool, tiers, virsh):
    """12. pool-define with an unknown replica policy is refused and the
    daemon lives on."""
    running = pool(replica="policy='copy'")
    t = tiers("bad")
    name = running.name + "-bad"
    xml = sp.pool_xml(name, t.primary, t.secondary, replica="policy='mirror'")
    try:
        with refused(XML_ERROR,
                     "unknown replica policy 'mirror': expected none, copy, link, hot or auto"):
            conn.storagePoolDefineXML(xml, 0)
    finally:
        run(["virsh", "-q", "pool-undefine", name], check=False)
    assert name not in virsh("pool-list", "--all", "--name")
    assert daemon_alive()
    assert pool_running(running.name)
