"""Template versions: vol-upload into a template that instances depend on
publishes a new version instead of being refused (issue 20, item 4).

Each test makes its own pool (`pool`, policy 'copy' unless it says) with
the template base.qcow2 holding version 1 (0x11 in its first MiB) and
the instance pc01 on it, and runs alone:

    LIBVIRT=11.3.0 tools/virt-env exec /usr/bin/python3 -m pytest -q \\
        tests/integration/test_template_versions.py -k rollback

What is checked is what libvirt's own verbs do (virsh vol-upload,
vol-create-as, vol-wipe, pool-dumpxml) and what the files then hold
(qemu-io reads through each chain, qemu-img info of the backing chain).
"""

import json
import os
import xml.etree.ElementTree as ET

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (LogMark, assert_pattern, backing_of, listdir, qemu_img_info,
                              refused, run, sha256)

MiB = 1024 * 1024
NS = "urn:stormpool:pool:1.0"
VERSIONS = ".stormpool-versions"
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID
SIZE = 64 * MiB


def image(path, pattern):
    """A qcow2 image of 64 MiB whose first MiB reads @pattern."""
    return sp.make_template(path, SIZE, writes=[(pattern, 0, MiB)])


def create_instance(virsh, p, name):
    virsh("vol-create-as", p.name, name, str(SIZE), "--format", "qcow2",
          "--backing-vol", "base.qcow2", "--backing-vol-format", "qcow2")
    return p.path(name)


class Lab:
    """A pool with base.qcow2 at version 1 and pc01 on it; v1 and v2 are
    the images uploaded (v2: 0x22 in its first MiB)."""

    def __init__(self, p, workdir, virsh):
        self.p = p
        self.virsh = virsh
        self.template = p.template_path("base.qcow2")
        self.v1 = image(os.path.join(workdir, "v1.qcow2"), 0x11)
        self.v2 = image(os.path.join(workdir, "v2.qcow2"), 0x22)
        virsh("vol-create-as", p.name, "base.qcow2", str(SIZE), "--format", "qcow2")
        virsh("vol-upload", "--pool", p.name, "base.qcow2", self.v1)
        virsh("pool-refresh", p.name)
        self.pc01 = create_instance(virsh, p, "pc01.qcow2")
        self.r1 = backing_of(self.pc01)

    def upload(self, path):
        """virsh vol-upload, then a pool-refresh that waits for the pool's
        background work (libvirt refreshes the pool itself when the stream
        closes, in a thread of its own)."""
        self.virsh("vol-upload", "--pool", self.p.name, "base.qcow2", path)
        self.virsh("pool-refresh", self.p.name)

    def versions_dir(self):
        return os.path.join(self.p.primary, VERSIONS, "base.qcow2")

    def kept(self):
        return sorted(os.path.join(self.versions_dir(), f) for f in listdir(self.versions_dir()))

    def status(self):
        """pool-dumpxml's <stormpool:version> elements."""
        root = ET.fromstring(self.p.xml())
        return [dict(v.attrib) for v in root.iter("{%s}version" % NS)]


@pytest.fixture
def lab(pool, workdir, virsh):
    def make(replica="policy='copy'"):
        return Lab(pool(replica=replica), workdir, virsh)
    return make


def chain(path):
    """The files of the backing chain of @path, as qemu-img sees them."""
    out = run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path])[1]
    return [entry["filename"] for entry in json.loads(out)]


def test_upload_with_an_instance_publishes_a_version_and_keeps_the_old(lab):
    """pc01 depends on v1: vol-upload of v2 is not refused; the template
    becomes v2, pc01 still reads v1 through the same chain, v1's file is
    kept in the primary tier and shown with its dependent; vol-list grows
    no volume."""
    c = lab()
    before = chain(c.pc01)
    c.upload(c.v2)
    assert sha256(c.template) == sha256(c.v2)
    assert_pattern(c.pc01, 0x11, 0, MiB)
    assert chain(c.pc01) == before
    assert backing_of(c.pc01) == c.r1
    kept = c.kept()
    assert len(kept) == 1 and sha256(kept[0]) == sha256(c.v1), kept
    assert os.path.basename(kept[0]) == os.path.basename(c.r1)
    assert c.status() == [{"template": "base.qcow2", "path": kept[0], "dependents": "1",
                           "size": str(os.path.getsize(kept[0])),
                           "allocation": str(os.stat(kept[0]).st_blocks * 512)}]
    assert c.p.vol_names() == ["base.qcow2", "pc01.qcow2"]
    assert [f for f in listdir(c.versions_dir()) if f.startswith("upload-")] == []


def test_new_instance_gets_the_new_version(lab, virsh):
    """After the upload, vol-create-as makes pc02 of v2 (right after
    vol-upload, without a refresh between), pc01 stays on v1."""
    c = lab()
    virsh("vol-upload", "--pool", c.p.name, "base.qcow2", c.v2)
    pc02 = create_instance(virsh, c.p, "pc02.qcow2")
    assert_pattern(pc02, 0x22, 0, MiB)
    assert_pattern(c.pc01, 0x11, 0, MiB)
    assert backing_of(pc02) != c.r1


def test_wipe_moves_an_instance_to_the_new_version_and_v1_goes(lab, virsh):
    """vol-wipe pc01 recomposes it onto v2; nothing depends on v1 any
    more, so the next refresh's collection removes its file and replica."""
    c = lab()
    c.upload(c.v2)
    virsh("vol-wipe", "--pool", c.p.name, "pc01.qcow2")
    assert_pattern(c.pc01, 0x22, 0, MiB)
    assert backing_of(c.pc01) != c.r1
    assert qemu_img_info(c.pc01)["virtual-size"] == SIZE
    virsh("pool-refresh", c.p.name)
    assert not os.path.exists(c.r1)
    assert not os.path.exists(os.path.join(c.p.primary, VERSIONS))
    assert c.status() == []


def test_uploading_the_old_image_again_rolls_back(lab, virsh):
    """v2, then v1's bytes again: the kept v1 is the template again (its
    file, so its replica), new instances back onto pc01's replica."""
    c = lab()
    c.upload(c.v2)
    pc02 = create_instance(virsh, c.p, "pc02.qcow2")
    kept_v1 = c.kept()[0]
    c.upload(c.v1)
    assert os.stat(c.template).st_ino == os.stat(kept_v1).st_ino
    pc03 = create_instance(virsh, c.p, "pc03.qcow2")
    assert backing_of(pc03) == c.r1
    assert_pattern(pc03, 0x11, 0, MiB)
    assert_pattern(pc02, 0x22, 0, MiB)
    c.p.refresh()               # the versions' status is counted at refresh
    # v1 is the template again, not listed; v2 is kept for pc02
    assert [(v["path"], v["dependents"]) for v in c.status()] == \
        [(p, "1") for p in c.kept() if os.stat(p).st_ino != os.stat(c.template).st_ino]


def abort_upload(conn, p, data):
    """vol-upload whose stream breaks off after @data."""
    stream = conn.newStream(0)
    p.vol("base.qcow2").upload(stream, 0, 0, 0)
    stream.send(data)
    stream.abort()


def test_wrong_uploads_leave_the_template_and_instances(conn, lab, workdir):
    """Not an image, a format the pool refuses, a stream that breaks off:
    the template keeps v1, pc01 reads v1, no file is left behind."""
    c = lab()
    digest = sha256(c.template)
    text = os.path.join(workdir, "notes.txt")
    with open(text, "w") as f:
        f.write("not an image\n")
    vmdk = os.path.join(workdir, "disk.vmdk")
    run(["qemu-img", "create", "-q", "-f", "vmdk", vmdk, str(SIZE)])
    mark = LogMark()
    for path in (text, vmdk):
        c.upload(path)
        assert sha256(c.template) == digest
    with open(c.v2, "rb") as f:
        abort_upload(conn, c.p, f.read(os.path.getsize(c.v2) // 2))
    c.p.refresh()
    assert sha256(c.template) == digest
    assert_pattern(c.pc01, 0x11, 0, MiB)
    assert listdir(c.versions_dir()) == []
    mark.assert_logged("the upload is no qcow2 image")
    mark.assert_logged("is a vmdk image")


def test_running_guest_keeps_its_version_and_its_wipe_is_refused(lab, guest, virsh):
    """A guest runs on pc01: the upload of v2 goes through, the guest
    keeps running on v1, and vol-wipe of its instance is refused as for
    any running guest; once it is off, the wipe moves pc01 to v2."""
    c = lab()
    name = guest(c.p, "pc01.qcow2")
    c.upload(c.v2)
    assert virsh("domstate", name).strip() == "running"
    with refused(IN_USE, "in use by a running guest"):
        c.p.vol("pc01.qcow2").wipe(0)
    virsh("destroy", name)
    virsh("vol-wipe", "--pool", c.p.name, "pc01.qcow2")
    assert_pattern(c.pc01, 0x22, 0, MiB)


def test_eager_pool_prepares_the_new_versions_replica(lab):
    """prepare='eager': the new version's replica is made by the refresh
    the upload triggers, before any instance of it."""
    c = lab(replica="policy='copy' prepare='eager'")
    c.upload(c.v2)
    replicas = os.path.join(c.p.secondary, sp.REPLICAS, "base.qcow2")
    made = sorted(os.path.join(replicas, f) for f in os.listdir(replicas))
    assert len(made) == 2 and c.r1 in made, made
    assert sha256([r for r in made if r != c.r1][0]) == sha256(c.v2)


def test_template_named_by_an_instance_itself_is_pinned(lab, conn):
    """policy 'none': pc01 names the template's file, which must keep its
    contents: the upload is refused, naming it."""
    c = lab(replica="policy='none'")
    digest = sha256(c.template)
    stream = conn.newStream(0)
    try:
        with refused(IN_USE, "cannot upload a new version of template 'base.qcow2': "
                     "1 image(s) name its file"):
            c.p.vol("base.qcow2").upload(stream, 0, 0, 0)
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
    assert sha256(c.template) == digest
