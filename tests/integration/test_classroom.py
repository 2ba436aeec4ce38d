"""The classroom scenario through the private daemons and plain virsh.

A pool with a template in the primary tier hands out 20 instances in the
secondary tier; instances are checked with qemu-img, reset, grown, cloned
and deleted; the template is protected and never changes; the pool and its
volumes survive a daemon restart.
"""

import os
import re

from taplib import (Suite, backing_template, daemon_alive, listdir, make_tmpdir,
                    qemu_img_info, replica_dir, run, sha256, virsh, virsh_fails,
                    vol_names, TOP)

POOL = "sp-classroom"
INSTANCES = ["pc%02d.qcow2" % i for i in range(1, 21)]
MiB = 1024 * 1024

suite = Suite("classroom")
root = make_tmpdir("classroom-")
suite.cleanup_dir(root)
primary = os.path.join(root, "hdd", "templates")
secondary = os.path.join(root, "ssd", "lab")
template = os.path.join(primary, "win10.qcow2")
state = {}


def assert_instance_of_template(overlay):
    """The pool is defined without a replica setting: policy 'auto', and
    both tiers are on one file system here, so instances back onto a hard
    link of the template in the secondary tier."""
    name, backing = backing_template(overlay, secondary)
    assert name == "win10.qcow2", (overlay, backing)
    assert os.path.dirname(backing) == replica_dir(secondary, "win10.qcow2"), backing
    assert os.path.samefile(backing, template), backing
    return backing


def vol_xml_field(xml, pattern):
    m = re.search(pattern, xml, re.S)
    assert m, "%r not found in:\n%s" % (pattern, xml)
    return m.group(1)


def qemu_io(path, command, fmt="qcow2"):
    return run(["qemu-io", "-f", fmt, "-c", command, path])[1]


def assert_pattern(path, pattern, offset, length):
    out = run(["qemu-io", "-r", "-f", "qcow2", "-U", "-c",
               "read -P 0x%02x %d %d" % (pattern, offset, length), path], check=False)
    assert "Pattern verification failed" not in out[1] + out[2] and out[0] == 0, \
        "pattern 0x%02x not at %d in %s: %s %s" % (pattern, offset, path, out[1], out[2])


@suite.step("pool-define-as, pool-build, pool-start, pool-autostart")
def _():
    suite.cleanup_pool(POOL)
    virsh("pool-define-as", POOL, "stormpool", "--source-path", primary,
          "--target", secondary)
    virsh("pool-build", POOL)
    assert os.path.isdir(primary) and os.path.isdir(secondary)
    virsh("pool-start", POOL)
    virsh("pool-autostart", POOL)
    assert POOL in virsh("pool-list", "--type", "stormpool", "--name")
    assert POOL not in virsh("pool-list", "--type", "dir", "--name")


@suite.step("pool-build creates both tiers with the target permissions")
def _():
    base = os.path.join(root, "perm")
    xml = os.path.join(root, "perm.xml")
    with open(xml, "w") as f:
        f.write("""<pool type='stormpool'>
  <name>sp-classroom-perm</name>
  <source><dir path='%s/a/hdd'/></source>
  <target><path>%s/b/ssd</path>
    <permissions><mode>0750</mode><owner>0</owner><group>0</group></permissions>
  </target>
</pool>""" % (base, base))
    suite.cleanup_pool("sp-classroom-perm")
    virsh("pool-define", xml)
    virsh("pool-build", "sp-classroom-perm")
    for d in ("a/hdd", "b/ssd"):
        st = os.stat(os.path.join(base, d))
        assert oct(st.st_mode & 0o7777) == oct(0o750), (d, oct(st.st_mode))
    virsh("pool-start", "sp-classroom-perm")
    virsh("pool-destroy", "sp-classroom-perm")
    virsh("pool-delete", "sp-classroom-perm")
    assert not os.path.exists(os.path.join(base, "a/hdd"))
    virsh("pool-undefine", "sp-classroom-perm")


@suite.step("a real qcow2 template in the primary tier is listed after pool-refresh")
def _():
    run(["qemu-img", "create", "-q", "-f", "qcow2", template, "64M"])
    qemu_io(template, "write -P 0xab 0 4M")
    qemu_io(template, "write -P 0xcd 32M 1M")
    state["template_sha"] = sha256(template)
    virsh("pool-refresh", POOL)
    names = vol_names(POOL)
    assert names == ["win10.qcow2"], names
    xml = virsh("vol-dumpxml", "--pool", POOL, "win10.qcow2")
    assert "<format type='qcow2'/>" in xml
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(64 * MiB)


@suite.step("pool-dumpxml shows both tiers in the stormpool namespace")
def _():
    xml = virsh("pool-dumpxml", POOL)
    assert "xmlns:stormpool='urn:stormpool:pool:1.0'" in xml, xml
    for tier, path in (("primary", primary), ("secondary", secondary)):
        m = re.search(r"<stormpool:tier name='%s' path='%s'>\s*"
                      r"<stormpool:capacity unit='bytes'>(\d+)</stormpool:capacity>\s*"
                      r"<stormpool:allocation unit='bytes'>(\d+)</stormpool:allocation>\s*"
                      r"<stormpool:available unit='bytes'>(\d+)</stormpool:available>"
                      % (tier, re.escape(path)), xml)
        assert m, xml
        st = os.statvfs(path)
        assert int(m.group(1)) == st.f_blocks * st.f_frsize


@suite.step("pool-info reports the secondary tier")
def _():
    info = virsh("pool-info", "--bytes", POOL)
    capacity = int(vol_xml_field(info, r"Capacity:\s+(\d+)"))
    st = os.statvfs(secondary)
    assert capacity == st.f_blocks * st.f_frsize


@suite.step("20 instances with vol-create-as --backing-vol, each checked by qemu-img")
def _():
    for name in INSTANCES:
        virsh("vol-create-as", POOL, name, "20G", "--format", "qcow2",
              "--backing-vol", "win10.qcow2", "--backing-vol-format", "qcow2")
    for name in INSTANCES:
        path = os.path.join(secondary, name)
        info = qemu_img_info(path)
        assert info["format"] == "qcow2", info
        assert info["virtual-size"] == 20 * 1024 * MiB, info
        assert_instance_of_template(path)
        assert info["backing-filename-format"] == "qcow2", info
        assert info["filename"] == path
        # an instance is its guest's own: libvirt lends it to QEMU's user
        assert oct(os.stat(path).st_mode & 0o7777) == oct(0o600), path
    assert sorted(vol_names(POOL)) == \
        sorted(INSTANCES + ["win10.qcow2"])
    assert [f for f in listdir(secondary) if not f.startswith(".")] == sorted(INSTANCES)


@suite.step("pool-dumpxml shows the template's link replica and its 20 dependents")
def _():
    xml = virsh("pool-dumpxml", POOL)
    replica = assert_instance_of_template(os.path.join(secondary, "pc01.qcow2"))
    m = re.search(r"<stormpool:replicas policy='link'>\s*<stormpool:replica template='win10.qcow2' "
                  r"path='%s' dependents='20' size='(\d+)'" % re.escape(replica), xml)
    assert m, xml
    assert int(m.group(1)) == os.path.getsize(template)
    assert "win10.qcow2" not in [v for v in vol_names(POOL) if v != "win10.qcow2"]


@suite.step("vol-dumpxml of an instance: path, capacity, allocation, format, backingStore")
def _():
    xml = virsh("vol-dumpxml", "--pool", POOL, "pc01.qcow2")
    assert vol_xml_field(xml, r"<target>\s*<path>([^<]+)</path>") == \
        os.path.join(secondary, "pc01.qcow2")
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(20 * 1024 * MiB)
    allocation = int(vol_xml_field(xml, r"<allocation unit='bytes'>(\d+)<"))
    assert allocation == os.stat(os.path.join(secondary, "pc01.qcow2")).st_blocks * 512
    replica = assert_instance_of_template(os.path.join(secondary, "pc01.qcow2"))
    assert re.search(r"<backingStore>\s*<path>%s</path>\s*<format type='qcow2'/>"
                     % re.escape(replica), xml), xml
    assert "<compat>1.1</compat>" in xml


@suite.step("the instances read the template's data; their writes stay in the overlay")
def _():
    pc = os.path.join(secondary, "pc01.qcow2")
    assert_pattern(pc, 0xab, 0, 4 * MiB)
    assert_pattern(pc, 0xcd, 32 * MiB, MiB)
    qemu_io(pc, "write -P 0x5a 0 64k")
    assert_pattern(pc, 0x5a, 0, 65536)
    assert sha256(template) == state["template_sha"]


@suite.step("backing volume given by path and by key, capacity taken from the template")
def _():
    virsh("vol-create-as", POOL, "bypath.qcow2", "64M", "--format", "qcow2",
          "--backing-vol", template)
    assert_instance_of_template(os.path.join(secondary, "bypath.qcow2"))
    xml = """<volume><name>nocap.qcow2</name>
               <target><format type='qcow2'/></target>
               <backingStore><path>%s</path></backingStore></volume>""" % template
    path = os.path.join(root, "nocap.xml")
    with open(path, "w") as f:
        f.write(xml)
    virsh("vol-create", POOL, path)
    info = qemu_img_info(os.path.join(secondary, "nocap.qcow2"))
    assert info["virtual-size"] == 64 * MiB, info
    assert info["backing-filename-format"] == "qcow2"
    virsh("vol-delete", "--pool", POOL, "bypath.qcow2")
    virsh("vol-delete", "--pool", POOL, "nocap.qcow2")


@suite.step("deleting the template is refused and names its dependents")
def _():
    err = virsh_fails("vol-delete", "--pool", POOL, "win10.qcow2",
                      expect="cannot delete template 'win10.qcow2': 20 instance(s) depend on it")
    assert "pc01.qcow2, pc02.qcow2" in err and "and 15 more" in err, err
    assert os.path.exists(template)
    assert sha256(template) == state["template_sha"]


@suite.step("wiping, resizing or uploading into the template is refused too")
def _():
    virsh_fails("vol-wipe", "--pool", POOL, "win10.qcow2", expect="cannot wipe template")
    virsh_fails("vol-resize", "--pool", POOL, "win10.qcow2", "128M",
                expect="cannot resize template")
    data = os.path.join(root, "upload.bin")
    with open(data, "wb") as f:
        f.write(b"\0" * 4096)
    virsh_fails("vol-upload", "--pool", POOL, "win10.qcow2", data,
                expect="cannot upload into template")
    assert sha256(template) == state["template_sha"]


@suite.step("vol-wipe of an instance returns it to the pristine template")
def _():
    pc = os.path.join(secondary, "pc01.qcow2")
    before = os.stat(pc).st_blocks
    qemu_io(pc, "write -P 0x77 1M 8M")
    assert os.stat(pc).st_blocks > before
    virsh("vol-wipe", "--pool", POOL, "pc01.qcow2")
    assert_pattern(pc, 0xab, 0, 4 * MiB)
    info = qemu_img_info(pc)
    assert info["virtual-size"] == 20 * 1024 * MiB
    assert_instance_of_template(pc)
    run(["qemu-img", "check", "-q", pc])
    assert os.stat(pc).st_blocks <= before + 8, (before, os.stat(pc).st_blocks)
    virsh_fails("vol-wipe", "--pool", POOL, "--algorithm", "nnsa", "pc01.qcow2",
                expect="only the default 'zero' algorithm")


@suite.step("vol-resize grows an instance and refuses to shrink it")
def _():
    virsh("vol-resize", "--pool", POOL, "pc02.qcow2", "30G")
    assert qemu_img_info(os.path.join(secondary, "pc02.qcow2"))["virtual-size"] == 30 * 1024 * MiB
    virsh("vol-resize", "--pool", POOL, "pc02.qcow2", "1G", "--delta")
    assert qemu_img_info(os.path.join(secondary, "pc02.qcow2"))["virtual-size"] == 31 * 1024 * MiB
    virsh_fails("vol-resize", "--pool", POOL, "pc02.qcow2", "10G", "--shrink",
                expect="can only grow")
    xml = virsh("vol-dumpxml", "--pool", POOL, "pc02.qcow2")
    assert vol_xml_field(xml, r"<capacity unit='bytes'>(\d+)<") == str(31 * 1024 * MiB)


@suite.step("vol-clone of an instance: a new instance of the same template with the data")
def _():
    pc = os.path.join(secondary, "pc03.qcow2")
    qemu_io(pc, "write -P 0x33 2M 1M")
    virsh("vol-clone", "--pool", POOL, "pc03.qcow2", "pc03-copy.qcow2")
    copy = os.path.join(secondary, "pc03-copy.qcow2")
    info = qemu_img_info(copy)
    assert info["backing-filename-format"] == "qcow2"
    assert_instance_of_template(copy)
    assert_pattern(copy, 0x33, 2 * MiB, MiB)
    assert_pattern(copy, 0xab, 0, 2 * MiB)
    run(["qemu-img", "check", "-q", copy])


@suite.step("vol-create-from an instance without backing store makes a flattened template")
def _():
    xml = os.path.join(root, "flat.xml")
    with open(xml, "w") as f:
        f.write("<volume><name>flat.qcow2</name><capacity>0</capacity>"
                "<target><format type='qcow2'/></target></volume>")
    virsh("vol-create-from", POOL, xml, "pc03.qcow2", "--inputpool", POOL)
    flat = os.path.join(primary, "flat.qcow2")
    info = qemu_img_info(flat)
    assert "backing-filename" not in info, info
    assert_pattern(flat, 0x33, 2 * MiB, MiB)
    assert_pattern(flat, 0xab, 0, 2 * MiB)
    virsh("vol-delete", "--pool", POOL, "flat.qcow2")


@suite.step("vol-delete of an instance removes only its overlay")
def _():
    virsh("vol-delete", "--pool", POOL, "pc03-copy.qcow2")
    virsh("vol-delete", "--pool", POOL, "pc20.qcow2")
    assert not os.path.exists(os.path.join(secondary, "pc20.qcow2"))
    assert "pc20.qcow2" not in virsh("vol-list", POOL)
    assert os.path.exists(template) and sha256(template) == state["template_sha"]


@suite.step("an empty template, then vol-upload fills it and vol-download reads it back")
def _():
    virsh("vol-create-as", POOL, "blank.img", "1M", "--format", "raw")
    assert os.path.exists(os.path.join(primary, "blank.img"))
    # a template is read by the QEMU of every guest, as whatever user it runs
    # as, and libvirt does not relabel it: readable by all, writable by root
    mode = os.stat(os.path.join(primary, "blank.img")).st_mode & 0o7777
    assert oct(mode) == oct(0o644), oct(mode)
    data = os.path.join(root, "payload.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(MiB))
    virsh("vol-upload", "--pool", POOL, "blank.img", data)
    back = os.path.join(root, "back.bin")
    virsh("vol-download", "--pool", POOL, "blank.img", back)
    assert sha256(back) == sha256(data)
    virsh("vol-create-as", POOL, "base.qcow2", "10G", "--format", "qcow2")
    info = qemu_img_info(os.path.join(primary, "base.qcow2"))
    assert info["virtual-size"] == 10 * 1024 * MiB and "backing-filename" not in info
    run(["qemu-img", "check", "-q", os.path.join(primary, "base.qcow2")])
    virsh("vol-delete", "--pool", POOL, "base.qcow2")
    virsh("vol-delete", "--pool", POOL, "blank.img")


@suite.step("pool-refresh picks up files made out of band and skips junk")
def _():
    byhand = os.path.join(secondary, "byhand.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", template, "-F", "qcow2", byhand])
    with open(os.path.join(secondary, "junk.qcow2"), "wb") as f:
        f.write(b"QFI\xfb" + b"\xff" * 100)
    with open(os.path.join(primary, "notes.txt"), "w") as f:
        f.write("not a disk\n")
    # an overlay named like a template: the template keeps the name
    clash = os.path.join(secondary, "win10.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", template, "-F", "qcow2", clash])
    stale = [os.path.join(tier, ".stormpool-tmp-pc99.qcow2-abc123")
             for tier in (primary, secondary)]
    for path in stale:
        with open(path, "w") as f:
            f.write("half written")
    virsh("pool-refresh", POOL)
    names = vol_names(POOL)
    assert "byhand.qcow2" in names and "junk.qcow2" not in names, names
    # a text file is a valid raw image, like in a dir pool
    assert "notes.txt" in names
    assert names.count("win10.qcow2") == 1, names
    assert virsh("vol-path", "--pool", POOL, "win10.qcow2").strip() == template
    for path in stale:
        assert not os.path.exists(path), "stale temporary file %s not removed" % path
    assert "running" in virsh("pool-info", POOL)
    # the clashing overlay is not listed, but it does back onto the
    # template: the dependents check reads the tier's files, so it counts
    err = virsh_fails("vol-delete", "--pool", POOL, "win10.qcow2", expect="21 instance(s)")
    assert "byhand.qcow2" in err
    os.unlink(os.path.join(secondary, "junk.qcow2"))
    os.unlink(clash)
    virsh("vol-delete", "--pool", POOL, "byhand.qcow2")
    virsh("vol-delete", "--pool", POOL, "notes.txt")


@suite.step("the pool and its volumes are back after a daemon restart (autostart)")
def _():
    before = sorted(vol_names(POOL))
    run([os.path.join(TOP, "tools", "virt-env"), "restart"])
    assert "running" in virsh("pool-info", POOL)
    after = sorted(vol_names(POOL))
    assert before == after, (before, after)
    assert_instance_of_template(os.path.join(secondary, "pc05.qcow2"))


@suite.step("the template's sha256 never changed")
def _():
    assert sha256(template) == state["template_sha"]


@suite.step("pool-destroy, pool-delete of a non-empty pool refused, then emptied and undefined")
def _():
    for name in vol_names(POOL):
        if name != "win10.qcow2":
            virsh("vol-delete", "--pool", POOL, name)
    virsh("vol-delete", "--pool", POOL, "win10.qcow2")
    assert listdir(primary) == [] and listdir(secondary) == []
    virsh("pool-destroy", POOL)
    assert "stormpool:tiers" not in virsh("pool-dumpxml", POOL)
    virsh("pool-delete", POOL)
    assert not os.path.exists(primary) and not os.path.exists(secondary)
    virsh("pool-undefine", POOL)
    assert POOL not in virsh("pool-list", "--all", "--name")
    assert daemon_alive()


suite.finish()
