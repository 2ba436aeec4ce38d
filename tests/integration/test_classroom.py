"""The classroom scenario through the private daemons and plain virsh.

A pool with a template in the primary tier hands out 20 instances in the
secondary tier; instances are checked with qemu-img, reset, grown, cloned
and deleted; the template is protected and never changes; the pool and its
volumes survive a daemon restart.

One scenario per test; each makes its own classroom (the `classroom`
fixture: a pool on HDD/templates and SSD/lab, the template win10.qcow2 with
known data, and as many instances pcNN.qcow2 as the test needs), and checks
at its end that the template's bytes never changed. Refusals are checked
by their libvirt error code and message. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_classroom.py -k wipe

The test marked disruptive restarts the shared daemons.
"""

import os
import re

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (assert_pattern, backing_of, daemon_alive, listdir, qemu_img_info,
                              qemu_io, refused, run, sha256, vol_names)

MiB = 1024 * 1024
GiB = 1024 * MiB
INSTANCES = ["pc%02d.qcow2" % i for i in range(1, 21)]
TEMPLATE_WRITES = [(0xab, 0, 4 * MiB), (0xcd, 32 * MiB, MiB)]
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID      # SP_ERROR_IN_USE


class Classroom:
    """A stormpool pool (`pool`) with the template win10.qcow2 and its
    instances."""

    def __init__(self, pool, instances):
        self.pool = pool
        self.name = pool.name
        self.primary = pool.primary
        self.secondary = pool.secondary
        self.template = pool.template_path("win10.qcow2")
        self.template_sha = sha256(self.template)
        self.instances = list(instances)

    def path(self, name):
        return self.pool.path(name)

    def assert_instance_of_template(self, overlay):
        """The pool is defined without a replica setting: policy 'auto', and
        both tiers are on one file system here, so instances back onto a
        hard link of the template in the secondary tier."""
        backing = backing_of(overlay)
        parent = os.path.dirname(backing)
        assert os.path.dirname(parent) == os.path.join(self.secondary, sp.REPLICAS), \
            (overlay, backing)
        assert os.path.basename(parent) == "win10.qcow2", (overlay, backing)
        assert os.path.samefile(backing, self.template), backing
        return backing

    def assert_template_unchanged(self):
        assert os.path.exists(self.template)
        assert sha256(self.template) == self.template_sha


@pytest.fixture
def classroom(pool, tiers, workdir):
    """classroom(instances=0, autostart=False) -> Classroom: a started pool
    on WORKDIR/hdd/templates and WORKDIR/ssd/lab (made by pool-build), the
    64 MiB template win10.qcow2 (0xab at 0+4M, 0xcd at 32M+1M) listed after
    a refresh, and @instances instances pc01.qcow2... of 20 GiB made as
    vol-create-as --backing-vol makes them."""
    def make(instances=0, autostart=False):
        t = tiers()._replace(primary=os.path.join(workdir, "hdd", "templates"),
                             secondary=os.path.join(workdir, "ssd", "lab"))
        p = pool(tiers=t, autostart=autostart)
        sp.make_template(p.template_path("win10.qcow2"), 64 * MiB, writes=TEMPLATE_WRITES)
        p.refresh()
        for name in INSTANCES[:instances]:
            p.create_volume(name, 20 * GiB, backing_vol="win10.qcow2")
        return Classroom(p, INSTANCES[:instances])
    return make


def vol_xml_field(xml, pattern):
    m = re.search(pattern, xml, re.S)
    assert m, "%r not found in:\n%s" % (pattern, xml)
    return m.group(1)


def upload(conn, vol, data):
    """vol-upload of the bytes @data into @vol through a stream."""
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, len(data), 0)
        stream.send(data)
        stream.finish()
    except libvirt.libvirtError:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        raise


# ---- the pool --------------------------------------------------------------------

def test_pool_define_build_start_autostart(pool_names, workdir, virsh):
    """pool-define-as, pool-build (both tiers made), pool-start and
    pool-autostart; pool-list --type finds it as a stormpool pool only."""
    name = pool_names()
    primary = os.path.join(workdir, "hdd", "templates")
    secondary = os.path.join(workdir, "ssd", "lab")
    virsh("pool-define-as", name, "stormpool", "--source-path", primary,
          "--target", secondary)
    virsh("pool-build", name)
    assert os.path.isdir(primary) and os.path.isdir(secondary)
    virsh("pool-start", name)
    virsh("pool-autostart", name)
    assert name in virsh("pool-list", "--type", "stormpool", "--name").split()
    assert name not in virsh("pool-list", "--type", "dir", "--name").split()


def test_pool_build_creates_both_tiers_with_the_target_permissions(conn, pool_names, workdir):
    """pool-build makes both tiers with the target's <permissions> mode;
    pool-delete removes them."""
    name = pool_names()
    base = os.path.join(workdir, "perm")
    p = conn.storagePoolDefineXML("""<pool type='stormpool'>
  <name>%s</name>
  <source><dir path='%s/a/hdd'/></source>
  <target><path>%s/b/ssd</path>
    <permissions><mode>0750</mode><owner>0</owner><group>0</group></permissions>
  </target>
</pool>""" % (name, base, base), 0)
    p.build(0)
    for d in ("a/hdd", "b/ssd"):
        st = os.stat(os.path.join(base, d))
        assert oct(st.st_mode & 0o7777) == oct(0o750), (d, oct(st.st_mode))
    p.create(0)
    p.destroy()
    p.delete(0)
    assert not os.path.exists(os.path.join(base, "a/hdd"))
    assert not os.path.exists(os.path.join(base, "b/ssd"))
    p.undefine()


def test_template_listed_after_refresh(classroom, virsh):
    """A real qcow2 template put into the primary tier is listed after
    pool-refresh, with its format and capacity."""
    c = classroom()
    assert vol_names(c.name) == ["win10.qcow2"]
    xml = virsh("vol-dumpxml", "--pool", c.name, "win10.qcow2")
    assert "<format type='qcow2'/>" in xml
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(64 * MiB)
    c.assert_template_unchanged()


def test_pool_dumpxml_shows_both_tiers(classroom, virsh):
    """pool-dumpxml shows both tiers in the stormpool namespace, each with
    its file system's capacity, allocation and available bytes."""
    c = classroom()
    xml = virsh("pool-dumpxml", c.name)
    assert "xmlns:stormpool='urn:stormpool:pool:1.0'" in xml, xml
    for tier, path in (("primary", c.primary), ("secondary", c.secondary)):
        m = re.search(r"<stormpool:tier name='%s' path='%s'>\s*"
                      r"<stormpool:capacity unit='bytes'>(\d+)</stormpool:capacity>\s*"
                      r"<stormpool:allocation unit='bytes'>(\d+)</stormpool:allocation>\s*"
                      r"<stormpool:available unit='bytes'>(\d+)</stormpool:available>"
                      % (tier, re.escape(path)), xml)
        assert m, xml
        st = os.statvfs(path)
        assert int(m.group(1)) == st.f_blocks * st.f_frsize


def test_pool_info_reports_the_secondary_tier(classroom, virsh):
    """pool-info's capacity is the secondary tier's file system's."""
    c = classroom()
    info = virsh("pool-info", "--bytes", c.name)
    capacity = int(vol_xml_field(info, r"Capacity:\s+(\d+)"))
    st = os.statvfs(c.secondary)
    assert capacity == st.f_blocks * st.f_frsize


# ---- 20 instances -------------------------------------------------------------------

def test_twenty_instances_checked_by_qemu_img(classroom, virsh):
    """20 instances made with vol-create-as --backing-vol: each a 20 GiB
    qcow2 overlay of the template's link replica, mode 0600; the pool
    lists them, the secondary tier holds nothing else."""
    c = classroom()
    for name in INSTANCES:
        virsh("vol-create-as", c.name, name, "20G", "--format", "qcow2",
              "--backing-vol", "win10.qcow2", "--backing-vol-format", "qcow2")
    for name in INSTANCES:
        path = c.path(name)
        info = qemu_img_info(path)
        assert info["format"] == "qcow2", info
        assert info["virtual-size"] == 20 * GiB, info
        c.assert_instance_of_template(path)
        assert info["backing-filename-format"] == "qcow2", info
        assert info["filename"] == path
        # an instance is its guest's own: libvirt lends it to QEMU's user
        assert oct(os.stat(path).st_mode & 0o7777) == oct(0o600), path
    assert vol_names(c.name) == sorted(INSTANCES + ["win10.qcow2"])
    assert [f for f in listdir(c.secondary) if not f.startswith(".")] == sorted(INSTANCES)
    c.assert_template_unchanged()


def test_pool_dumpxml_shows_the_link_replica_and_its_20_dependents(classroom, virsh):
    """pool-dumpxml reports the template's link replica with its 20
    dependents and the template's size; the replica is no volume."""
    c = classroom(20)
    xml = virsh("pool-dumpxml", c.name)
    replica = c.assert_instance_of_template(c.path("pc01.qcow2"))
    m = re.search(r"<stormpool:replicas policy='link'>\s*<stormpool:replica "
                  r"template='win10.qcow2' path='%s' dependents='20' size='(\d+)'"
                  % re.escape(replica), xml)
    assert m, xml
    assert int(m.group(1)) == os.path.getsize(c.template)
    assert vol_names(c.name) == sorted(INSTANCES + ["win10.qcow2"])
    c.assert_template_unchanged()


def test_vol_dumpxml_of_an_instance(classroom, virsh):
    """vol-dumpxml of an instance: its path, capacity, allocation, qcow2
    1.1, and the replica as backingStore."""
    c = classroom(1)
    pc = c.path("pc01.qcow2")
    xml = virsh("vol-dumpxml", "--pool", c.name, "pc01.qcow2")
    assert vol_xml_field(xml, r"<target>\s*<path>([^<]+)</path>") == pc
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(20 * GiB)
    allocation = int(vol_xml_field(xml, r"<allocation unit='bytes'>(\d+)<"))
    assert allocation == os.stat(pc).st_blocks * 512
    replica = c.assert_instance_of_template(pc)
    assert re.search(r"<backingStore>\s*<path>%s</path>\s*<format type='qcow2'/>"
                     % re.escape(replica), xml), xml
    assert "<compat>1.1</compat>" in xml


def test_instance_reads_the_template_and_writes_into_its_overlay(classroom):
    """An instance reads the template's data; what is written into it
    stays in its overlay, the template's bytes unchanged."""
    c = classroom(1)
    pc = c.path("pc01.qcow2")
    assert_pattern(pc, 0xab, 0, 4 * MiB)
    assert_pattern(pc, 0xcd, 32 * MiB, MiB)
    qemu_io(pc, "write -q -P 0x5a 0 64k")
    assert_pattern(pc, 0x5a, 0, 65536)
    c.assert_template_unchanged()


def test_backing_volume_given_by_path(classroom, virsh):
    """vol-create-as --backing-vol with the template's path (its key) makes
    an instance of it."""
    c = classroom()
    virsh("vol-create-as", c.name, "bypath.qcow2", "64M", "--format", "qcow2",
          "--backing-vol", c.template)
    c.assert_instance_of_template(c.path("bypath.qcow2"))
    virsh("vol-delete", "--pool", c.name, "bypath.qcow2")
    assert not os.path.exists(c.path("bypath.qcow2"))
    c.assert_template_unchanged()


def test_capacity_taken_from_the_template(classroom, workdir, virsh):
    """vol-create of an instance without <capacity> gets the template's."""
    c = classroom()
    path = os.path.join(workdir, "nocap.xml")
    with open(path, "w") as f:
        f.write("""<volume><name>nocap.qcow2</name>
               <target><format type='qcow2'/></target>
               <backingStore><path>%s</path></backingStore></volume>""" % c.template)
    virsh("vol-create", c.name, path)
    info = qemu_img_info(c.path("nocap.qcow2"))
    assert info["virtual-size"] == 64 * MiB, info
    assert info["backing-filename-format"] == "qcow2"
    c.assert_instance_of_template(c.path("nocap.qcow2"))
    virsh("vol-delete", "--pool", c.name, "nocap.qcow2")
    c.assert_template_unchanged()


# ---- the template is protected -------------------------------------------------------

DEPENDENTS = ("20 instance(s) depend on it: pc01.qcow2, pc02.qcow2, pc03.qcow2, "
              "pc04.qcow2, pc05.qcow2 and 15 more")


def test_deleting_the_template_is_refused_naming_its_dependents(classroom):
    """vol-delete of the template of 20 instances is refused, naming the
    first five of them."""
    c = classroom(20)
    with refused(IN_USE, "cannot delete template 'win10.qcow2': " + DEPENDENTS):
        c.pool.vol("win10.qcow2").delete(0)
    c.assert_template_unchanged()


def test_wiping_the_template_is_refused(classroom):
    """vol-wipe of the template of 20 instances is refused, naming them."""
    c = classroom(20)
    with refused(IN_USE, "cannot wipe template 'win10.qcow2': " + DEPENDENTS):
        c.pool.vol("win10.qcow2").wipe(0)
    c.assert_template_unchanged()


def test_resizing_the_template_is_refused(classroom):
    """vol-resize of the template of 20 instances is refused, naming them."""
    c = classroom(20)
    with refused(IN_USE, "cannot resize template 'win10.qcow2': " + DEPENDENTS):
        c.pool.vol("win10.qcow2").resize(128 * MiB, 0)
    c.assert_template_unchanged()


def test_uploading_no_image_into_the_template_changes_nothing(conn, classroom):
    """vol-upload into the template of 20 instances is a new version
    (test_template_versions.py); 4 KiB of zeros are no qcow2 image, so
    the template stays as it was."""
    c = classroom(20)
    upload(conn, c.pool.vol("win10.qcow2"), b"\0" * 4096)
    c.pool.refresh()
    c.assert_template_unchanged()


# ---- what happens to instances ----------------------------------------------------------

def test_vol_wipe_returns_an_instance_to_the_pristine_template(classroom, virsh):
    """vol-wipe of a written instance: it reads the template again, keeps
    its size and backing, passes qemu-img check and holds no data."""
    c = classroom(1)
    pc = c.path("pc01.qcow2")
    before = os.stat(pc).st_blocks
    qemu_io(pc, "write -q -P 0x77 1M 8M")
    assert os.stat(pc).st_blocks > before
    virsh("vol-wipe", "--pool", c.name, "pc01.qcow2")
    assert_pattern(pc, 0xab, 0, 4 * MiB)
    assert qemu_img_info(pc)["virtual-size"] == 20 * GiB
    c.assert_instance_of_template(pc)
    run(["qemu-img", "check", "-q", pc])
    assert os.stat(pc).st_blocks <= before + 8, (before, os.stat(pc).st_blocks)
    c.assert_template_unchanged()


def test_vol_wipe_with_another_algorithm_is_refused(classroom):
    """vol-wipe --algorithm nnsa of an instance is refused: only 'zero'."""
    c = classroom(1)
    before = sha256(c.path("pc01.qcow2"))
    with refused(libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
                 "only the default 'zero' algorithm is supported"):
        c.pool.vol("pc01.qcow2").wipePattern(libvirt.VIR_STORAGE_VOL_WIPE_ALG_NNSA, 0)
    assert sha256(c.path("pc01.qcow2")) == before
    c.assert_template_unchanged()


def test_vol_resize_grows_an_instance(classroom, virsh):
    """vol-resize to 30G, then by 1G more (--delta): qemu-img and
    vol-dumpxml show 31 GiB."""
    c = classroom(2)
    virsh("vol-resize", "--pool", c.name, "pc02.qcow2", "30G")
    assert qemu_img_info(c.path("pc02.qcow2"))["virtual-size"] == 30 * GiB
    virsh("vol-resize", "--pool", c.name, "pc02.qcow2", "1G", "--delta")
    assert qemu_img_info(c.path("pc02.qcow2"))["virtual-size"] == 31 * GiB
    xml = virsh("vol-dumpxml", "--pool", c.name, "pc02.qcow2")
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(31 * GiB)
    c.assert_template_unchanged()


def test_vol_resize_refuses_to_shrink_an_instance(classroom, virsh):
    """vol-resize --shrink of an instance is refused; its size stays."""
    c = classroom(2)
    with refused(libvirt.VIR_ERR_OPERATION_UNSUPPORTED, "can only grow"):
        c.pool.vol("pc02.qcow2").resize(10 * GiB, libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK)
    xml = virsh("vol-dumpxml", "--pool", c.name, "pc02.qcow2")
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(20 * GiB)
    c.assert_template_unchanged()


def test_vol_clone_of_an_instance(classroom, virsh):
    """vol-clone of an instance: a new instance of the same template with
    the instance's data and the template's."""
    c = classroom(3)
    qemu_io(c.path("pc03.qcow2"), "write -q -P 0x33 2M 1M")
    virsh("vol-clone", "--pool", c.name, "pc03.qcow2", "pc03-copy.qcow2")
    copy = c.path("pc03-copy.qcow2")
    assert qemu_img_info(copy)["backing-filename-format"] == "qcow2"
    c.assert_instance_of_template(copy)
    assert_pattern(copy, 0x33, 2 * MiB, MiB)
    assert_pattern(copy, 0xab, 0, 2 * MiB)
    run(["qemu-img", "check", "-q", copy])
    c.assert_template_unchanged()


def test_vol_create_from_an_instance_makes_a_flattened_template(classroom, workdir, virsh):
    """vol-create-from an instance, without a backing store: a template in
    the primary tier holding the instance's data and the template's."""
    c = classroom(3)
    qemu_io(c.path("pc03.qcow2"), "write -q -P 0x33 2M 1M")
    xml = os.path.join(workdir, "flat.xml")
    with open(xml, "w") as f:
        f.write("<volume><name>flat.qcow2</name><capacity>0</capacity>"
                "<target><format type='qcow2'/></target></volume>")
    virsh("vol-create-from", c.name, xml, "pc03.qcow2", "--inputpool", c.name)
    flat = c.pool.template_path("flat.qcow2")
    assert "backing-filename" not in qemu_img_info(flat)
    assert_pattern(flat, 0x33, 2 * MiB, MiB)
    assert_pattern(flat, 0xab, 0, 2 * MiB)
    virsh("vol-delete", "--pool", c.name, "flat.qcow2")
    c.assert_template_unchanged()


def test_vol_delete_of_an_instance_removes_only_its_overlay(classroom, virsh):
    """vol-delete of an instance removes its file and its volume; the other
    instance and the template stay."""
    c = classroom(2)
    virsh("vol-delete", "--pool", c.name, "pc02.qcow2")
    assert not os.path.exists(c.path("pc02.qcow2"))
    assert "pc02.qcow2" not in virsh("vol-list", c.name)
    assert vol_names(c.name) == ["pc01.qcow2", "win10.qcow2"]
    c.assert_instance_of_template(c.path("pc01.qcow2"))
    c.assert_template_unchanged()


# ---- templates made through the pool ---------------------------------------------------

def test_empty_template_filled_by_vol_upload_read_by_vol_download(classroom, workdir, virsh):
    """vol-create-as of a raw template makes it in the primary tier, mode
    0644; vol-upload fills it and vol-download reads the same bytes back."""
    c = classroom()
    virsh("vol-create-as", c.name, "blank.img", "1M", "--format", "raw")
    blank = c.pool.template_path("blank.img")
    assert os.path.exists(blank)
    # a template is read by the QEMU of every guest, as whatever user it runs
    # as, and libvirt does not relabel it: readable by all, writable by root
    mode = os.stat(blank).st_mode & 0o7777
    assert oct(mode) == oct(0o644), oct(mode)
    data = os.path.join(workdir, "payload.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(MiB))
    virsh("vol-upload", "--pool", c.name, "blank.img", data)
    back = os.path.join(workdir, "back.bin")
    virsh("vol-download", "--pool", c.name, "blank.img", back)
    assert sha256(back) == sha256(data)
    virsh("vol-delete", "--pool", c.name, "blank.img")
    c.assert_template_unchanged()


def test_empty_qcow2_template(classroom, virsh):
    """vol-create-as of a 10G qcow2 without backing: a template with no
    backing file that passes qemu-img check."""
    c = classroom()
    virsh("vol-create-as", c.name, "base.qcow2", "10G", "--format", "qcow2")
    base = c.pool.template_path("base.qcow2")
    info = qemu_img_info(base)
    assert info["virtual-size"] == 10 * GiB and "backing-filename" not in info
    run(["qemu-img", "check", "-q", base])
    virsh("vol-delete", "--pool", c.name, "base.qcow2")
    c.assert_template_unchanged()


# ---- files made out of band ----------------------------------------------------------------

def test_refresh_picks_up_files_made_out_of_band_and_skips_junk(classroom, virsh):
    """pool-refresh lists an overlay made by hand and a text file, skips a
    broken qcow2 and an overlay named like the template (which still counts
    as a dependent), and removes stale temporary files."""
    c = classroom(2)
    byhand = c.path("byhand.qcow2")
    sp.make_template(byhand, 0, backing=c.template)
    with open(c.path("junk.qcow2"), "wb") as f:
        f.write(b"QFI\xfb" + b"\xff" * 100)
    with open(c.pool.template_path("notes.txt"), "w") as f:
        f.write("not a disk\n")
    # an overlay named like a template: the template keeps the name
    clash = c.path("win10.qcow2")
    sp.make_template(clash, 0, backing=c.template)
    stale = [os.path.join(tier, ".stormpool-tmp-pc99.qcow2-abc123")
             for tier in (c.primary, c.secondary)]
    for path in stale:
        with open(path, "w") as f:
            f.write("half written")
    c.pool.refresh()
    names = vol_names(c.name)
    assert "byhand.qcow2" in names and "junk.qcow2" not in names, names
    # a text file is a valid raw image, like in a dir pool
    assert "notes.txt" in names
    assert names.count("win10.qcow2") == 1, names
    assert virsh("vol-path", "--pool", c.name, "win10.qcow2").strip() == c.template
    for path in stale:
        assert not os.path.exists(path), "stale temporary file %s not removed" % path
    assert c.pool.running()
    # the clashing overlay is not listed, but it does back onto the
    # template: the dependents check reads the tier's files, so it counts
    with refused(IN_USE, "cannot delete template 'win10.qcow2': 4 instance(s) depend on "
                 "it: ") as r:
        c.pool.vol("win10.qcow2").delete(0)
    assert "byhand.qcow2" in r.message, r.message
    os.unlink(c.path("junk.qcow2"))
    os.unlink(clash)
    virsh("vol-delete", "--pool", c.name, "byhand.qcow2")
    virsh("vol-delete", "--pool", c.name, "notes.txt")
    c.assert_template_unchanged()


# ---- the daemons restart --------------------------------------------------------------------

@pytest.mark.disruptive
def test_pool_and_volumes_back_after_a_daemon_restart(classroom, daemons, virsh):
    """An autostarted pool runs again after the daemons restart, with the
    same volumes, its instances still on the template's replica."""
    c = classroom(5, autostart=True)
    before = vol_names(c.name)
    daemons.stop()
    daemons.start()
    assert "running" in virsh("pool-info", c.name)
    assert vol_names(c.name) == before
    c.assert_instance_of_template(c.path("pc05.qcow2"))
    c.assert_template_unchanged()


# ---- the end of a classroom ---------------------------------------------------------------

def test_pool_delete_of_a_pool_holding_volumes_is_refused(classroom, virsh):
    """pool-delete of a stopped pool whose tiers still hold its template
    and instances is refused, like a dir pool's: the volumes stay."""
    c = classroom(2)
    files = {f: sha256(f) for f in [c.template] + [c.path(n) for n in c.instances]}
    c.pool.obj.destroy()
    with refused(libvirt.VIR_ERR_SYSTEM_ERROR, "cannot remove the secondary tier "
                 "directory '%s': Directory not empty" % c.secondary):
        c.pool.obj.delete(0)
    assert {f: sha256(f) for f in files} == files
    assert [f for f in listdir(c.secondary) if not f.startswith(".")] == c.instances
    assert listdir(c.primary) == ["win10.qcow2"]
    assert daemon_alive()


def test_pool_emptied_destroyed_deleted_and_undefined(classroom, virsh):
    """Once its instances and then its template are deleted, the tiers are
    empty; pool-destroy drops the live tiers from its XML, pool-delete
    removes both tiers and pool-undefine the pool."""
    c = classroom(2)
    for name in vol_names(c.name):
        if name != "win10.qcow2":
            virsh("vol-delete", "--pool", c.name, name)
    virsh("vol-delete", "--pool", c.name, "win10.qcow2")
    assert listdir(c.primary) == [] and listdir(c.secondary) == []
    virsh("pool-destroy", c.name)
    assert "stormpool:tiers" not in virsh("pool-dumpxml", c.name)
    virsh("pool-delete", c.name)
    assert not os.path.exists(c.primary) and not os.path.exists(c.secondary)
    virsh("pool-undefine", c.name)
    assert c.name not in virsh("pool-list", "--all", "--name").split()
    assert daemon_alive()
