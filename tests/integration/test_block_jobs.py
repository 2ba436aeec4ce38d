"""Block jobs and external snapshots of guests on stormpool instances.

A guest's disk is a <disk type='volume'> on an instance; the patched
libvirt gives it the replica or template the pool reports as an explicit,
read-only backing store, and refuses, before they start, the jobs that
would write into it or into anything below it (libvirt patch 0007):
'virsh blockcommit --active' into the replica or template, a block copy,
snapshot or backup reusing it as destination (also by another name of the
same file). Commits into the instance and block pull keep working, the
refusal survives a restart of virtqemud while the guest runs (status XML),
and external snapshots without --diskspec name their layer after the
instance, in the secondary tier (libvirt patch 0008).

Guests are firmware-only (SeaBIOS, TCG, 64 MiB): QEMU opens the whole
chain at start and the jobs run on the idle disk. One scenario per test;
each makes its own pool (spt-*), template and guest, and runs alone:

    tools/virt-env exec /usr/bin/python3 -m pytest tests/integration/test_block_jobs.py -k pull

The test marked disruptive restarts the shared virtqemud (its guests keep
running).
"""

import os
import re
import signal
import xml.etree.ElementTree as ET

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (assert_pattern, qemu_img_info, refused, run,
                              sha256, wait_for)

MiB = 1024 * 1024
DENIED = libvirt.VIR_ERR_OPERATION_DENIED
SHARED = "the storage pool shares this backing image read-only between its volumes"
TEMPLATE_WRITES = [(0xab, 0, 4 * MiB), (0xcd, 32 * MiB, MiB)]


# ---- guests -----------------------------------------------------------------

class Desktop:
    """A guest on an instance of a stormpool pool's template."""

    def __init__(self, conn, name, pool, instance, template):
        self.conn = conn
        self.name = name
        self.pool = pool
        self.instance = instance            # the instance's volume name
        self.template = template            # the template's path

    @property
    def dom(self):
        return self.conn.lookupByName(self.name)

    @property
    def instance_path(self):
        return self.pool.path(self.instance)

    def backing(self):
        """The image the pool reports as the instance's backing store."""
        xml = ET.fromstring(self.pool.vol(self.instance).XMLDesc(0))
        return xml.findtext("backingStore/path")

    def chain(self):
        """The paths of the live backing chain of vda, top first."""
        xml = ET.fromstring(self.dom.XMLDesc(0))
        disk = [d for d in xml.findall("devices/disk")
                if d.find("target").get("dev") == "vda"][0]
        paths = []
        node = disk
        while node is not None:
            source = node.find("source")
            if source is None:
                break
            if source.get("file"):
                paths.append(source.get("file"))
            elif source.get("volume"):
                paths.append(self.pool.path(source.get("volume")))
            node = node.find("backingStore")
        return paths

    def assert_running(self):
        state, _ = self.dom.state()
        assert state == libvirt.VIR_DOMAIN_RUNNING, "%s is in state %d" % (self.name, state)


@pytest.fixture
def desktop(request, conn, pool, template, virsh):
    """desktop(replica=None) -> Desktop: a pool (with @replica, its
    <stormpool:replica> attributes), a 64 MiB template tpl.qcow2 with known
    data, an instance pc01.qcow2 of it and a running guest on the instance.
    The guest is destroyed and undefined (with its snapshots' metadata) at
    the end of the test."""
    made = []

    def make(replica=None):
        p = pool(replica=replica, start=False)
        t = template(p.template_path("tpl.qcow2"), 64 * MiB, TEMPLATE_WRITES)
        virsh("pool-start", p.name)
        virsh("vol-create-as", p.name, "pc01.qcow2", str(64 * MiB), "--format", "qcow2",
              "--backing-vol", "tpl.qcow2", "--backing-vol-format", "qcow2")
        name = "spt-bj-%s" % re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[5:30].strip("-")
        sp.remove_domain(name)
        made.append(name)
        conn.defineXML(sp.firmware_guest_xml(name, p.name, "pc01.qcow2"))
        conn.lookupByName(name).create()
        d = Desktop(conn, name, p, "pc01.qcow2", t)
        d.assert_running()
        return d
    yield make
    for name in made:
        sp.remove_domain(name)


def guest_write(d, pattern, offset, length):
    """Write into the guest's disk through its own QEMU (HMP qemu-io on the
    virtio-blk device's block backend)."""
    out = sp.virsh("qemu-monitor-command", d.name, "--hmp",
                   'qemu-io -d virtio-disk0/virtio-backend "write -P 0x%02x %d %d"'
                   % (pattern, offset, length))
    assert "rror" not in out, out


def guest_flush(d):
    """Have the guest's QEMU write its cached qcow2 metadata, so that the
    images can be read from outside while it runs."""
    out = sp.virsh("qemu-monitor-command", d.name, "--hmp",
                   'qemu-io -d virtio-disk0/virtio-backend "flush"')
    assert "rror" not in out, out


def snapshot_layer(d, name, virsh):
    """An external disk-only snapshot of vda into SECONDARY/pc01.NAME,
    named with --diskspec (libvirt's way without patch 0008)."""
    path = d.pool.path("pc01.%s" % name)
    virsh("snapshot-create-as", d.name, name, "--disk-only", "--no-metadata",
          "--diskspec", "vda,file=%s" % path)
    assert d.chain()[0] == path, d.chain()
    return path


def qemu_pid(d):
    with open(os.path.join(sp.prefix(), "var", "run", "libvirt", "qemu", d.name + ".pid")) as f:
        return int(f.read())


# ---- refused: writes into the pool's shared backing image ----------------------

@pytest.mark.parametrize("policy", ["link", "copy", "none"])
def test_active_commit_into_the_shared_backing_is_refused(desktop, virsh, policy):
    d = desktop("policy='%s'" % policy)
    backing = d.backing()
    if policy == "none":
        assert backing == d.template
    else:
        assert backing.startswith(os.path.join(d.pool.secondary, sp.REPLICAS)), backing
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()
    guest_write(d, 0x5a, 0, MiB)
    sums = {path: sha256(path) for path in {d.template, backing}}

    rc, _, err = run(["virsh", "blockcommit", d.name, "vda", "--active", "--pivot"],
                     check=False)
    assert rc != 0
    message = ("error: operation forbidden: cannot commit into '%s' of disk 'vda': %s"
               % (backing, SHARED))
    assert message in err, err
    # the API says the same, with its error code
    with refused(DENIED, "cannot commit into '%s' of disk 'vda': %s" % (backing, SHARED)):
        d.dom.blockCommit("vda", None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)

    assert d.dom.blockJobInfo("vda", 0) == {}
    assert {path: sha256(path) for path in sums} == sums
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()
    d.assert_running()
    guest_flush(d)
    assert_pattern(d.instance_path, 0x5a, 0, MiB)
    assert_pattern(d.template, 0xab, MiB, 3 * MiB)


def test_commit_of_the_instance_into_the_replica_is_refused(desktop, virsh):
    """A non-active commit (top: the instance, under a snapshot layer) whose
    base is the replica."""
    d = desktop("policy='copy'")
    backing = d.backing()
    layer = snapshot_layer(d, "s1", virsh)
    sums = {path: sha256(path) for path in (d.template, backing)}
    with refused(DENIED, "cannot commit into '%s' of disk 'vda'" % backing):
        d.dom.blockCommit("vda", backing, d.instance_path, 0, 0)
    rc, _, err = run(["virsh", "blockcommit", d.name, "vda", "--top", d.instance_path,
                      "--wait"], check=False)
    assert rc != 0 and SHARED in err, err
    assert {path: sha256(path) for path in sums} == sums
    assert d.chain()[:3] == [layer, d.instance_path, backing], d.chain()


def test_copy_into_the_template_by_another_name_is_refused(desktop, virsh):
    """With policy 'link' the replica is a hard link of the template: a
    block copy reusing the template under its own name in the primary tier
    is refused as well."""
    d = desktop("policy='link'")
    backing = d.backing()
    assert os.stat(backing).st_ino == os.stat(d.template).st_ino
    before = sha256(d.template)
    for target in (d.template, backing):
        rc, _, err = run(["virsh", "blockcopy", d.name, "vda", target, "--reuse-external",
                          "--transient-job", "--shallow", "--format", "qcow2"], check=False)
        assert rc != 0
        assert ("error: operation forbidden: cannot copy disk 'vda' into '%s': %s"
                % (target, SHARED)) in err, err
    assert sha256(d.template) == before
    assert d.dom.blockJobInfo("vda", 0) == {}


def test_snapshot_reusing_the_replica_is_refused(desktop, virsh):
    d = desktop("policy='copy'")
    backing = d.backing()
    before = sha256(backing)
    rc, _, err = run(["virsh", "snapshot-create-as", d.name, "bad", "--disk-only",
                      "--reuse-external", "--no-metadata",
                      "--diskspec", "vda,file=%s" % backing], check=False)
    assert rc != 0
    assert ("error: operation forbidden: cannot create the external snapshot of disk 'vda' "
            "in '%s': %s" % (backing, SHARED)) in err, err
    assert sha256(backing) == before
    assert d.chain()[0] == d.instance_path


def test_backup_into_the_replica_is_refused(desktop, virsh, workdir):
    d = desktop("policy='copy'")
    backing = d.backing()
    before = sha256(backing)
    xml = os.path.join(workdir, "backup.xml")
    with open(xml, "w") as f:
        f.write("<domainbackup mode='push'><disks><disk name='vda' type='file'>"
                "<target file='%s'/><driver type='qcow2'/></disk></disks></domainbackup>"
                % backing)
    rc, _, err = run(["virsh", "backup-begin", d.name, xml, "--reuse-external"], check=False)
    assert rc != 0
    assert ("error: operation forbidden: cannot use '%s' for the backup of disk 'vda': %s"
            % (backing, SHARED)) in err, err
    assert sha256(backing) == before


# ---- allowed: writes into the instance and the layers above it ----------------

def test_commit_of_a_snapshot_layer_into_the_instance(desktop, virsh):
    d = desktop()
    backing = d.backing()
    before = sha256(d.template)
    layer = snapshot_layer(d, "s1", virsh)
    guest_write(d, 0x3c, 2 * MiB, MiB)
    guest_flush(d)
    assert_pattern(layer, 0x3c, 2 * MiB, MiB)

    # without a base, a commit goes down to the bottom of the chain, the
    # pool's image: refused; --shallow commits into the instance
    rc, _, err = run(["virsh", "blockcommit", d.name, "vda", "--active", "--pivot"],
                     check=False)
    assert rc != 0 and SHARED in err, err
    virsh("blockcommit", d.name, "vda", "--active", "--shallow", "--pivot")
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()
    guest_flush(d)
    assert_pattern(d.instance_path, 0x3c, 2 * MiB, MiB)
    assert sha256(d.template) == before
    d.assert_running()

    # the layer no longer backs anything: the pool deletes it
    virsh("pool-refresh", d.pool.name)
    assert "pc01.s1" in d.pool.vol_names()
    virsh("vol-delete", "--pool", d.pool.name, "pc01.s1")
    assert not os.path.exists(layer)


def test_pull_into_the_instance(desktop, virsh):
    d = desktop()
    backing = d.backing()
    before = sha256(d.template)
    guest_write(d, 0x77, 8 * MiB, MiB)
    virsh("blockpull", d.name, "vda", "--wait")
    wait_for(lambda: d.dom.blockJobInfo("vda", 0) == {}, 30, "the pull to end")
    assert d.chain() == [d.instance_path], d.chain()
    guest_flush(d)
    assert "backing-filename" not in qemu_img_info(d.instance_path)
    assert_pattern(d.instance_path, 0xab, 0, 4 * MiB)
    assert_pattern(d.instance_path, 0x77, 8 * MiB, MiB)
    assert_pattern(d.instance_path, 0xcd, 32 * MiB, MiB)
    assert sha256(d.template) == before
    assert os.path.exists(backing)
    d.assert_running()


# ---- the refusal survives a restart of virtqemud --------------------------------

@pytest.mark.disruptive
def test_refusal_survives_a_restart_of_virtqemud(desktop, virsh, daemons):
    """After a pull into a snapshot layer, the instance has left the chain:
    only the status XML remembers that the pool shares the image below."""
    d = desktop("policy='copy'")
    backing = d.backing()
    layer = snapshot_layer(d, "s1", virsh)
    virsh("blockpull", d.name, "vda", "--base", backing, "--wait")
    wait_for(lambda: d.chain()[:2] == [layer, backing], 30, "the pull to end")
    status = os.path.join(sp.prefix(), "var", "run", "libvirt", "qemu", d.name + ".xml")
    with open(status) as f:
        assert "<poolShared/>" in f.read()
    qemu = qemu_pid(d)

    pidfile = os.path.join(sp.prefix(), "var", "run", "virtqemud.pid")
    with open(pidfile) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), 30, "virtqemud to stop")
    daemons.start()
    with sp.connection() as c:
        d.conn = c
        d.assert_running()
        assert qemu_pid(d) == qemu
        assert d.chain()[:2] == [layer, backing], d.chain()
        before = sha256(backing)
        with refused(DENIED, "cannot commit into '%s' of disk 'vda': %s" % (backing, SHARED)):
            d.dom.blockCommit("vda", None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
        assert sha256(backing) == before


# ---- external snapshots without --diskspec (libvirt patch 0008) ---------------

def libvirt_version():
    return tuple(int(x) for x in os.environ["LIBVIRT"].split("."))


def snapshot_names(d):
    return sorted(s.getName() for s in d.dom.listAllSnapshots(0))


def test_snapshot_of_a_running_guest_lands_next_to_its_instance(desktop, virsh):
    d = desktop("policy='copy'")
    backing = d.backing()
    before = sha256(d.template)
    layer = d.pool.path("pc01.s1")
    virsh("snapshot-create-as", d.name, "s1", "--disk-only")
    assert os.path.exists(layer)
    assert qemu_img_info(layer)["backing-filename"] == d.instance_path
    assert d.chain()[:3] == [layer, d.instance_path, backing], d.chain()
    guest_write(d, 0x42, 4 * MiB, MiB)
    guest_flush(d)
    assert_pattern(layer, 0x42, 4 * MiB, MiB)
    assert sha256(d.template) == before
    # the shared image stays protected below the new layer
    with refused(DENIED, "cannot commit into '%s' of disk 'vda'" % backing):
        d.dom.blockCommit("vda", backing, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)

    # deleting the snapshot commits the layer into the instance
    virsh("snapshot-delete", d.name, "s1")
    assert snapshot_names(d) == []
    assert not os.path.exists(layer)
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()
    guest_flush(d)
    assert_pattern(d.instance_path, 0x42, 4 * MiB, MiB)
    assert sha256(d.template) == before
    d.assert_running()


def test_snapshot_of_a_stopped_guest_lands_next_to_its_instance(desktop, virsh):
    d = desktop("policy='copy'")
    backing = d.backing()
    d.dom.destroy()
    layer = d.pool.path("pc01.s1")
    virsh("snapshot-create-as", d.name, "s1", "--disk-only")
    assert qemu_img_info(layer)["backing-filename"] == d.instance_path
    inactive = d.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "<source file='%s'/>" % layer in inactive, inactive
    assert "volume='pc01.qcow2'" in inactive, inactive
    # the pool's backing image is asked for at each start, never kept
    assert backing not in inactive, inactive
    snapxml = d.dom.snapshotLookupByName("s1").getXMLDesc(0)
    assert backing not in snapxml, snapxml

    d.dom.create()
    assert d.chain()[:3] == [layer, d.instance_path, backing], d.chain()
    with refused(DENIED, "cannot commit into '%s' of disk 'vda'" % backing):
        d.dom.blockCommit("vda", backing, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
    guest_write(d, 0x24, 6 * MiB, MiB)
    d.dom.destroy()

    # deleting it from the stopped guest commits the layer in a paused QEMU
    virsh("snapshot-delete", d.name, "s1")
    assert not os.path.exists(layer)
    assert_pattern(d.instance_path, 0x24, 6 * MiB, MiB)
    d.dom.create()
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()


def test_revert_to_an_external_snapshot(desktop, virsh):
    d = desktop("policy='copy'")
    backing = d.backing()
    layer = d.pool.path("pc01.s1")
    guest_write(d, 0x11, 0, MiB)
    virsh("snapshot-create-as", d.name, "s1", "--disk-only")
    guest_write(d, 0x22, 0, MiB)            # after s1: lost by the revert
    guest_flush(d)
    assert_pattern(layer, 0x22, 0, MiB)
    rc, _, err = run(["virsh", "snapshot-revert", d.name, "s1", "--running"], check=False)
    if libvirt_version() < (9, 9):
        # libvirt before 9.9.0 reverts to no external snapshot, of any disk
        assert rc != 0 and "revert to external snapshot not supported yet" in err, err
        return
    assert rc == 0, err
    d.assert_running()
    chain = d.chain()
    # a new layer next to the instance, named after it, on the instance
    assert chain[1:3] == [d.instance_path, backing], chain
    assert os.path.dirname(chain[0]) == d.pool.secondary, chain
    assert os.path.basename(chain[0]).startswith("pc01."), chain
    assert not os.path.exists(layer)
    assert_pattern(chain[0], 0x11, 0, MiB)
    virsh("snapshot-delete", d.name, "s1")
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()
    guest_flush(d)
    assert_pattern(d.instance_path, 0x11, 0, MiB)


def test_snapshot_with_memory_as_virt_manager_makes_it(desktop, virsh, workdir):
    """virt-manager's default for a running guest: an external snapshot
    with its memory in a file, the disks' layers named by libvirt."""
    d = desktop("policy='copy'")
    backing = d.backing()
    layer = d.pool.path("pc01.s2")
    memory = os.path.join(workdir, "s2.mem")
    xml = os.path.join(workdir, "s2.xml")
    with open(xml, "w") as f:
        f.write("<domainsnapshot><name>s2</name>"
                "<memory snapshot='external' file='%s'/></domainsnapshot>" % memory)
    virsh("snapshot-create", d.name, xml)
    assert os.path.exists(memory)
    assert d.chain()[:3] == [layer, d.instance_path, backing], d.chain()
    d.assert_running()
    if libvirt_version() >= (9, 9):
        virsh("snapshot-revert", d.name, "s2")
        d.assert_running()
        chain = d.chain()
        assert chain[1:3] == [d.instance_path, backing], chain
        assert os.path.dirname(chain[0]) == d.pool.secondary, chain
    virsh("snapshot-delete", d.name, "s2")
    assert snapshot_names(d) == []
    assert d.chain()[:2] == [d.instance_path, backing], d.chain()
    d.assert_running()
