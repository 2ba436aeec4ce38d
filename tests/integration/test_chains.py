"""Every chain in the tiers is known to the pool, whoever made it.

libvirt's external snapshots and block jobs, and qemu-img by hand, add
images to a stormpool pool's tiers that the pool did not make. Each is
listed (a layer), protects what it backs onto from vol-delete and vol-wipe
at once (before any refresh), and stops protecting it once a block job
took it out of the chain. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_chains.py -k snapshot
"""

import os
import xml.etree.ElementTree as ET

import libvirt

import stormpool_client as sp
from stormpool_client import backing_of, make_template, refused, sha256

MiB = 1024 * 1024
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID      # SP_ERROR_IN_USE
COPY = "policy='copy'"


def desktop(pool, instances=("pc01.qcow2",)):
    """A pool with a 64 MiB template t.qcow2 and @instances of it."""
    p = pool(replica=COPY)
    make_template(p.template_path("t.qcow2"), 64 * MiB, writes=[(0xab, 0, MiB)])
    p.refresh()
    for name in instances:
        p.create_volume(name, 64 * MiB, backing_vol="t.qcow2")
    return p


def snapshot(virsh, dom, name, layer):
    """An external disk-only snapshot of vda into the file @layer."""
    virsh("snapshot-create-as", dom, name, "--disk-only", "--diskspec",
          "vda,file=%s" % layer)


def vol_backing(p, name):
    """The <backingStore><path> of the volume's XML, or None."""
    tree = ET.fromstring(p.vol(name).XMLDesc(0))
    return tree.findtext("backingStore/path")


def test_snapshot_layer_protects_instance_at_once(pool, guest, virsh):
    """A snapshot layer made a moment ago, with no refresh since, already
    keeps its instance from vol-delete and vol-wipe, every byte kept."""
    p = desktop(pool)
    dom = guest(p, "pc01.qcow2")
    layer = p.path("pc01.s1")
    snapshot(virsh, dom, "s1", layer)
    assert backing_of(layer) == p.path("pc01.qcow2")
    before = sha256(p.path("pc01.qcow2"))
    want = ("1 layer(s) in '%s' back onto it: pc01.s1" % p.secondary)
    with refused(IN_USE, "cannot delete instance 'pc01.qcow2': " + want):
        p.vol("pc01.qcow2").delete(0)
    with refused(IN_USE, "cannot wipe instance 'pc01.qcow2': " + want):
        p.vol("pc01.qcow2").wipe(0)
    assert sha256(p.path("pc01.qcow2")) == before


def test_refresh_lists_snapshot_layers(pool, guest, virsh):
    """pool-refresh lists the layers libvirt made, each with the image it
    backs onto, a layer on a layer included."""
    p = desktop(pool)
    dom = guest(p, "pc01.qcow2")
    snapshot(virsh, dom, "s1", p.path("pc01.s1"))
    snapshot(virsh, dom, "s2", p.path("pc01.s2"))
    p.refresh()
    assert p.vol_names() == ["pc01.qcow2", "pc01.s1", "pc01.s2", "t.qcow2"]
    assert vol_backing(p, "pc01.s1") == p.path("pc01.qcow2")
    assert vol_backing(p, "pc01.s2") == p.path("pc01.s1")
    with refused(IN_USE, "cannot delete layer 'pc01.s1': 1 layer(s) in '%s' back onto "
                 "it: pc01.s2" % p.secondary):
        p.vol("pc01.s1").delete(0)


def test_pulled_instance_no_longer_protects_template(pool, guest, virsh):
    """blockpull copies the template's data into the instance and drops the
    backing file: the template no longer counts that instance, with no
    refresh between."""
    p = desktop(pool, instances=("pc01.qcow2", "pc02.qcow2"))
    dom = guest(p, "pc02.qcow2")
    with refused(IN_USE, "cannot delete template 't.qcow2': 2 instance(s) depend on it: "
                 "pc01.qcow2, pc02.qcow2"):
        p.vol("t.qcow2").delete(0)
    virsh("blockpull", dom, "vda", "--wait")
    assert "backing-filename" not in sp.qemu_img_info(p.path("pc02.qcow2"))
    with refused(IN_USE, "cannot delete template 't.qcow2': 1 instance(s) depend on it: "
                 "pc01.qcow2"):
        p.vol("t.qcow2").delete(0)


def test_overlay_made_by_hand_is_an_instance(pool, virsh):
    """An overlay of a template that qemu-img put into the secondary tier
    (as a shallow blockcopy or a copy script would) protects the template
    at once and is listed as an instance after a refresh."""
    p = desktop(pool, instances=())
    byhand = p.path("byhand.qcow2")
    make_template(byhand, 0, backing=p.template_path("t.qcow2"))
    with refused(IN_USE, "cannot delete template 't.qcow2': 1 instance(s) depend on it: "
                 "byhand.qcow2"):
        p.vol("t.qcow2").delete(0)
    p.refresh()
    assert "byhand.qcow2" in p.vol_names()
