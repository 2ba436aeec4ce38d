"""Clones of a desktop keep its template.

A desktop is a guest on a stormpool instance: a qcow2 overlay in the
secondary tier, backing onto a template of the primary tier (or onto the
pool's replica of it), that holds the desktop's own data. Its clone, by
the patched virt-manager's virt-clone (virtinst, the code of
virt-manager's "Clone" dialog) or by virsh vol-clone, is another instance
of the same template in the secondary tier holding a copy of the
desktop's own clusters, nothing more: the template is neither copied nor
touched, and both instances keep it from deletion. The clone's disk is a
<disk type='volume'> on the new volume, and the clone starts. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_clone.py -k virt_clone

virt-clone is the patched tree's of the virt-manager that goes with
LIBVIRT (4.1.0 with libvirt 9.0.0, 5.0.0 with 11.3.0): 'make virt-manager'
(tools/build-virt-manager) makes it.
"""

import json
import os
import xml.etree.ElementTree as ET

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import make_template, qemu_io, refused, sha256

MiB = 1024 * 1024
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID
TEMPLATE_SIZE = 192 * MiB
TEMPLATE_DATA = 96 * MiB        # pattern 0xab from 0
OWN_OFFSET = 64 * MiB           # the desktop's own data: half over the
OWN_SIZE = 50 * MiB             # template's data, half beyond it

POLICIES = [pytest.param(None, id="default"),
            pytest.param("policy='copy'", id="copy"),
            pytest.param("policy='none'", id="none")]


@pytest.fixture
def domains():
    """Names of domains a test's commands defined (the clones): removed at
    the end of the test, before its pools go (list it last)."""
    names = []
    yield names
    for name in reversed(names):
        sp.remove_domain(name)


def desktop(pool, workdir, replica=None, instance="pc01.qcow2"):
    """A pool with a template t.qcow2 (TEMPLATE_DATA of pattern 0xab) and
    an instance of it holding OWN_SIZE of random data of its own."""
    p = pool(replica=replica)
    make_template(p.template_path("t.qcow2"), TEMPLATE_SIZE,
                  writes=[(0xab, 0, TEMPLATE_DATA)])
    p.refresh()
    p.create_volume(instance, TEMPLATE_SIZE, backing_vol="t.qcow2")
    data = os.path.join(workdir, "own-data")
    with open(data, "wb") as f:
        f.write(os.urandom(OWN_SIZE))
    qemu_io(p.path(instance), "write -q -s %s %d %d" % (data, OWN_OFFSET, OWN_SIZE))
    os.unlink(data)
    p.refresh()
    return p


def own_clusters(path):
    """The extents the qcow2 image at @path holds itself (not its backing
    chain): [(start, length)] from qemu-img map."""
    _, out, _ = sp.run(["qemu-img", "map", "-U", "--output=json", path])
    return [(e["start"], e["length"]) for e in json.loads(out)
            if e["depth"] == 0 and e["data"]]


def vol_backing(p, name):
    """(path, format) of the volume's <backingStore>, or None."""
    tree = ET.fromstring(p.vol(name).XMLDesc(0))
    if tree.find("backingStore") is None:
        return None
    return tree.findtext("backingStore/path"), tree.find("backingStore/format").get("type")


def domain_disk(name, flags=0):
    """The domain's only disk: (type, <source> attributes, the <disk> element)."""
    with sp.connection() as c:
        tree = ET.fromstring(c.lookupByName(name).XMLDesc(flags))
    disks = tree.findall("devices/disk")
    assert len(disks) == 1, ET.tostring(tree).decode()
    return disks[0].get("type"), dict(disks[0].find("source").attrib), disks[0]


def assert_same_disk_content(a, b):
    rc, out, err = sp.run(["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", a, b],
                          check=False)
    assert rc == 0, "%s and %s differ: %s %s" % (a, b, out, err)


def assert_instance_clone(p, original, clone):
    """@clone is a new instance in the secondary tier of the template
    @original is an instance of, backing onto the same image, holding
    exactly @original's own clusters and reading as @original does."""
    path = p.path(clone)
    assert p.vol(clone).path() == path and os.path.isfile(path)
    backing = vol_backing(p, original)
    assert backing is not None
    assert vol_backing(p, clone) == backing
    assert sp.backing_of(path) == sp.backing_of(p.path(original)) == backing[0]
    assert own_clusters(path) == own_clusters(p.path(original))
    assert sum(length for _, length in own_clusters(path)) == OWN_SIZE
    assert_same_disk_content(p.path(original), path)
    # The template shows through where the desktop wrote nothing
    sp.assert_pattern(path, 0xab, 0, OWN_OFFSET)
    sp.assert_pattern(path, 0, OWN_OFFSET + OWN_SIZE, TEMPLATE_SIZE - OWN_OFFSET - OWN_SIZE)


def assert_template_protected(p, instances):
    names = ", ".join(sorted(instances))
    with refused(IN_USE, "cannot delete template 't.qcow2': %d instance(s) depend on it: %s"
                 % (len(instances), names)):
        p.vol("t.qcow2").delete(0)


def start_and_stop(virsh, name):
    virsh("start", name)
    assert virsh("domstate", name).strip() == "running"
    virsh("destroy", name)


@pytest.mark.time_limit(600)
@pytest.mark.parametrize("replica", POLICIES)
def test_virt_clone_keeps_the_template(pool, guest, domains, workdir, virsh, replica):
    """virt-clone --auto-clone of a desktop on an instance: the clone is a
    new instance of the same template with the desktop's own data, on a
    <disk type='volume'>, and starts; the template is untouched and keeps
    both instances."""
    p = desktop(pool, workdir, replica)
    template_sha = sha256(p.template_path("t.qcow2"))
    dom = guest(p, "pc01.qcow2")          # it runs: a working desktop
    virsh("destroy", dom)
    domains.append(dom + "-clone")
    sp.virt_clone("--original", dom, "--auto-clone")

    assert sorted(p.vol_names()) == ["pc01-clone.qcow2", "pc01.qcow2", "t.qcow2"]
    assert sp.listdir(p.primary) == ["t.qcow2"]         # no flattened copy
    assert_instance_clone(p, "pc01.qcow2", "pc01-clone.qcow2")
    disktype, source, _ = domain_disk(dom + "-clone", libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert (disktype, source) == ("volume", {"pool": p.name, "volume": "pc01-clone.qcow2"})

    start_and_stop(virsh, dom + "-clone")
    start_and_stop(virsh, dom)
    assert sha256(p.template_path("t.qcow2")) == template_sha
    assert_template_protected(p, ["pc01.qcow2", "pc01-clone.qcow2"])


def test_clone_starts_with_the_pools_backing_store(pool, guest, domains, workdir, virsh):
    """The running clone's disk has the image its instance backs onto as an
    explicit backing store that libvirt does not relabel, as any volume
    disk on an instance (a file disk would not)."""
    p = desktop(pool, workdir, "policy='copy'")
    dom = guest(p, "pc01.qcow2")
    virsh("destroy", dom)
    domains.append(dom + "-clone")
    sp.virt_clone("--original", dom, "--auto-clone")
    virsh("start", dom + "-clone")
    disktype, _, disk = domain_disk(dom + "-clone")
    assert disktype == "volume", ET.tostring(disk).decode()
    store = disk.find("backingStore")
    assert store is not None and store.find("source").get("file") == \
        vol_backing(p, "pc01-clone.qcow2")[0], ET.tostring(disk).decode()
    label = store.find("source/seclabel[@model='dac']")
    assert label is not None and label.get("relabel") == "no", ET.tostring(disk).decode()
    virsh("destroy", dom + "-clone")


@pytest.mark.parametrize("replica", POLICIES)
def test_vol_clone_of_an_instance(pool, workdir, virsh, replica):
    """virsh vol-clone of an instance is an instance of the same template
    too."""
    p = desktop(pool, workdir, replica)
    template_sha = sha256(p.template_path("t.qcow2"))
    virsh("vol-clone", "--pool", p.name, "pc01.qcow2", "pc02.qcow2")
    assert sp.listdir(p.primary) == ["t.qcow2"]
    assert_instance_clone(p, "pc01.qcow2", "pc02.qcow2")
    assert sha256(p.template_path("t.qcow2")) == template_sha
    assert_template_protected(p, ["pc01.qcow2", "pc02.qcow2"])


def test_virt_clone_into_the_primary_tier_makes_a_template(pool, guest, domains, workdir,
                                                           virsh):
    """virt-clone --file PRIMARY/NAME of a desktop makes a new template of
    it there, flattened (the template's data and the desktop's), on a file
    disk, as before: the way to turn a desktop into a template."""
    p = desktop(pool, workdir)
    dom = guest(p, "pc01.qcow2")
    virsh("destroy", dom)
    golden = p.template_path("golden.qcow2")
    domains.append(dom + "-golden")
    sp.virt_clone("--original", dom, "--name", dom + "-golden", "--file", golden)

    assert "backing-filename" not in sp.qemu_img_info(golden)
    assert vol_backing(p, "golden.qcow2") is None
    assert_same_disk_content(p.path("pc01.qcow2"), golden)
    disktype, source, _ = domain_disk(dom + "-golden", libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert (disktype, source) == ("file", {"file": golden})
    start_and_stop(virsh, dom + "-golden")
    assert_template_protected(p, ["pc01.qcow2"])


def test_virt_clone_of_a_template_disk(pool, domains, conn, virsh):
    """A guest whose disk is a template itself is cloned as before: a new
    template, a full copy in the primary tier, on a file disk."""
    p = pool()
    make_template(p.template_path("t.qcow2"), TEMPLATE_SIZE,
                  writes=[(0xab, 0, TEMPLATE_DATA)])
    p.refresh()
    dom = p.name + "-guest"
    sp.remove_domain(dom)
    domains.append(dom)
    conn.defineXML(sp.firmware_guest_xml(dom, p.name, "t.qcow2"))
    domains.append(dom + "-clone")
    sp.virt_clone("--original", dom, "--auto-clone")

    copy = p.template_path("t-clone.qcow2")
    assert sorted(p.vol_names()) == ["t-clone.qcow2", "t.qcow2"]
    assert "backing-filename" not in sp.qemu_img_info(copy)
    assert_same_disk_content(p.template_path("t.qcow2"), copy)
    disktype, source, _ = domain_disk(dom + "-clone", libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert (disktype, source) == ("file", {"file": copy})
    start_and_stop(virsh, dom + "-clone")
