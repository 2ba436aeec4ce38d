"""virtinst knows stormpool pools: the patched virt-manager tree's library.

The tests import virtinst from the patched tree (_build/virt-manager-VERSION/src
of the virt-manager that goes with LIBVIRT, made by tools/build-virt-manager)
by sys.path, as virt-manager's own test
suite does with its checkout, and drive it against the private daemons:

  * StoragePool builds a stormpool pool's XML (source dir + target path),
    parses and round-trips what libvirt returns, and installs (defines,
    builds, starts) the pool;
  * StoragePool reads and writes the replica setting in the stormpool
    namespace (<stormpool:replica policy= prepare=/>), and libvirt keeps
    what it writes;
  * StorageVolume creates a template (no backing store) in the source dir
    and instances (a template as backing store, by path or by volume name)
    in the target dir: qcow2 overlays backing onto the template, checked
    with qemu-img info;
  * DeviceDisk gives a stormpool volume the disk type libvirt wants: 'file'
    with the path in the right tier for existing and new volumes, 'volume'
    for a <source pool= volume=> disk;
  * the patched virt-install creates domains with --import --disk vol=POOL/VOL
    and --disk pool=POOL,size=1,backing_store=TEMPLATE,format=qcow2.

Every name starts with "spv-vi"; domains, volumes, the pool and the
directories are removed at the end even when a step fails.
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from taplib import (Suite, listdir, make_tmpdir, qemu_img_info, run, sha256,
                    start_watchdog, template_data_paths, virsh, vol_names, TOP)

# The patched tree of the virt-manager that goes with LIBVIRT
VM_TREE = subprocess.check_output(
    [os.path.join(TOP, "tools", "build-virt-manager"), "--tree"],
    text=True).strip()
sys.path.insert(0, VM_TREE)

import libvirt  # noqa: E402  (Debian's binding, the private libvirt.so.0)
import virtinst  # noqa: E402
from virtinst import (DeviceDisk, StoragePool, StorageVolume,  # noqa: E402
                      VirtinstConnection)

POOL = "spv-vi-pool"
REPLICA_POOL = "spv-vi-replica"
DOM_VOL = "spv-vi-vol"
DOM_BACKING = "spv-vi-backing"
DOM_TEMPLATE = "spv-vi-template"
TEMPLATE = "win10.qcow2"
MiB = 1024 * 1024
GiB = 1024 * MiB
VIRT_INSTALL_TIMEOUT = 180
SUITE_TIMEOUT = 900

suite = Suite("virtinst")
print("# virtinst of %s" % os.path.relpath(VM_TREE, TOP))
watchdog = start_watchdog(suite, SUITE_TIMEOUT)
root = make_tmpdir("spv-vi-")
suite.cleanup_dir(root)
# A relative path that virtinst does not resolve is taken relative to the
# current directory (and a pool may be made for it): make that ours.
os.chdir(root)
primary = os.path.join(root, "hdd", "templates")
secondary = os.path.join(root, "ssd", "lab")
template_path = os.path.join(primary, TEMPLATE)
state = {}


def open_conn():
    conn = VirtinstConnection("qemu:///system")
    conn.open(None, None)
    return conn


conn = open_conn()
suite.cleanup(conn.close)


def pool_names():
    return sorted(p.name() for p in conn.listAllStoragePools())


def stray_pools():
    """Pools that virtinst made behind our back for one of our directories
    (our tiers, or the current directory, which is ours too). Other pools
    come and go: the daemons are shared."""
    stray = []
    for pool in conn.listAllStoragePools():
        try:
            path = StoragePool(conn, parsexml=pool.XMLDesc(0)).target_path or ""
        except libvirt.libvirtError:
            continue  # undefined meanwhile by someone else
        if pool.name() != POOL and (path + "/").startswith(root + "/"):
            stray.append(pool.name())
    return stray


def remove_stray_pools():
    stray = stray_pools()
    for name in stray:
        run(["virsh", "-q", "pool-destroy", name], check=False)
        run(["virsh", "-q", "pool-undefine", name], check=False)
    return stray


suite.cleanup(remove_stray_pools)


def lookup_pool():
    return conn.storagePoolLookupByName(POOL)


def canon(xml):
    """XML in canonical form: attribute order, quotes and the place of the
    namespace declarations do not matter, everything else does."""
    return ET.canonicalize(xml_data=xml, strip_text=True)


def assert_same_xml(got, want):
    assert canon(got) == canon(want), "got:\n%s\nwant:\n%s" % (got, want)


def assert_backs_onto_template(backing):
    """@backing is the template, or (with the pool's replica policy) one of
    the template's replicas in the secondary tier that the pool lists, with
    the template's data."""
    assert backing in template_data_paths(POOL, template_path), \
        "%s is neither the template %s nor one of its replicas" % (backing, template_path)
    assert os.path.samefile(backing, template_path) or \
        sha256(backing) == sha256(template_path), backing


def assert_overlay_of_template(path, size=None):
    """@path is a qcow2 overlay in the secondary tier backing onto the
    template (qemu-img info)."""
    assert os.path.dirname(path) == secondary, path
    info = qemu_img_info(path)
    assert info["format"] == "qcow2", info
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    assert backing, "%s has no backing file: %s" % (path, info)
    assert os.path.isabs(backing), info
    assert_backs_onto_template(backing)
    assert info.get("backing-filename-format") == "qcow2", info
    if size is not None:
        assert info["virtual-size"] == size, info
    return info


def remove_domain(name):
    run(["virsh", "-q", "destroy", name], check=False)
    run(["virsh", "-q", "undefine", name], check=False)


def delete_volume(name):
    run(["virsh", "-q", "vol-delete", "--pool", POOL, name], check=False)


def virt_install(*args):
    cmd = ["/usr/bin/python3", os.path.join(VM_TREE, "virt-install"),
           "--connect", "qemu:///system",
           "--virt-type", "qemu", "--memory", "64", "--vcpus", "1",
           "--network", "none", "--graphics", "none",
           "--osinfo", "detect=on,require=off", "--noautoconsole"] + list(args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=VIRT_INSTALL_TIMEOUT, cwd=root)
    except subprocess.TimeoutExpired:
        raise AssertionError("virt-install did not finish within %d s" %
                             VIRT_INSTALL_TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError("virt-install failed (%d):\n%s" %
                             (proc.returncode, proc.stdout))
    return proc.stdout


def domain_disk(name):
    """(type, source file, driver type) of the domain's only disk."""
    xml = virsh("dumpxml", name)
    disks = re.findall(r"<disk type='(\w+)' device='disk'>(.*?)</disk>", xml, re.S)
    assert len(disks) == 1, xml
    disktype, body = disks[0]
    src = re.search(r"<source file='([^']+)'", body)
    drv = re.search(r"<driver name='qemu' type='(\w+)'", body)
    return disktype, src and src.group(1), drv and drv.group(1)


# ---- StoragePool ----------------------------------------------------------

EXPECTED_POOL_XML = """<pool type="stormpool">
  <name>%s</name>
  <source>
    <dir path="%s"/>
  </source>
  <target>
    <path>%s</path>
  </target>
</pool>
""" % (POOL, primary, secondary)


def build_pool():
    pool = StoragePool(conn)
    pool.type = StoragePool.TYPE_STORMPOOL
    pool.name = POOL
    pool.source_path = primary
    pool.target_path = secondary
    return pool


@suite.step("virtinst is imported from the patched tree and knows TYPE_STORMPOOL")
def _():
    assert os.path.dirname(os.path.abspath(virtinst.__file__)) == \
        os.path.join(VM_TREE, "virtinst"), virtinst.__file__
    assert StoragePool.TYPE_STORMPOOL == "stormpool"
    # ... and talks to the private libvirt
    assert libvirt.__file__.startswith("/usr/lib/python3"), libvirt.__file__
    assert StoragePool.pool_type_is_supported(conn, "stormpool") is True
    assert StoragePool.pool_type_is_supported(conn, "dir") is True
    assert StoragePool.pool_type_is_supported(conn, "no-such-type") is False


@suite.step("StoragePool builds a stormpool pool's XML: <source><dir path> and <target><path>")
def _():
    pool = build_pool()
    assert pool.supports_source_path() and pool.supports_target_path()
    assert not pool.supports_hosts() and not pool.supports_format()
    assert not pool.supports_source_name()
    assert pool.get_disk_type() == StorageVolume.TYPE_FILE
    pool.validate()
    assert pool.get_xml() == EXPECTED_POOL_XML, pool.get_xml()
    # where new volumes go: templates to the source dir, instances to the target
    assert pool.get_new_volume_dir() == primary
    assert pool.get_new_volume_dir(backing_store=TEMPLATE) == secondary
    # validate() leaves a stormpool pool's target alone (no default path)
    nopath = build_pool()
    nopath.target_path = None
    nopath.validate()
    assert nopath.target_path is None


@suite.step("StoragePool parses stormpool XML with the stormpool namespace and round-trips it")
def _():
    xml = """<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>
  <name>spv-vi-parse</name>
  <source>
    <dir path='/srv/hdd/templates'/>
  </source>
  <target>
    <path>/srv/ssd/lab</path>
    <permissions>
      <mode>0755</mode>
    </permissions>
  </target>
  <stormpool:tiers>
    <stormpool:tier name='primary' path='/srv/hdd/templates'/>
  </stormpool:tiers>
</pool>
"""
    pool = StoragePool(conn, parsexml=xml)
    assert pool.type == "stormpool"
    assert pool.name == "spv-vi-parse"
    assert pool.source_path == "/srv/hdd/templates"
    assert pool.target_path == "/srv/ssd/lab"
    assert pool.permissions.mode == "0755"
    assert_same_xml(pool.get_xml(), xml)
    # changing a property touches only that element
    pool.target_path = "/srv/ssd/lab2"
    pool.source_path = "/srv/hdd/templates2"
    assert_same_xml(pool.get_xml(),
                    xml.replace("/srv/ssd/lab<", "/srv/ssd/lab2<")
                    .replace("<dir path='/srv/hdd/templates'/>",
                             "<dir path='/srv/hdd/templates2'/>"))


REPLICA_XML = """<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>
  <name>spv-vi-parse</name>
  <source>
    <dir path='/srv/hdd/templates'/>
  </source>
  <target>
    <path>/srv/ssd/lab</path>
  </target>
  <stormpool:replica policy='copy' prepare='eager'/>
  <stormpool:replicas policy='copy'>
    <stormpool:replica template='win10.qcow2' path='/srv/ssd/lab/.stormpool-replicas/win10.qcow2/3f2a9c41d07be815' dependents='2' size='1' allocation='1'/>
  </stormpool:replicas>
</pool>
"""


@suite.step("StoragePool reads and writes <stormpool:replica policy= prepare=/>; "
            "round trips keep the element and the xmlns declaration")
def _():
    pool = StoragePool(conn, parsexml=REPLICA_XML)
    # the setting, not the <stormpool:replica> status of <stormpool:replicas>
    assert pool.stormpool_replica.policy == "copy", pool.stormpool_replica.policy
    assert pool.stormpool_replica.prepare == "eager", pool.stormpool_replica.prepare
    assert_same_xml(pool.get_xml(), REPLICA_XML)
    assert "xmlns:stormpool=\"urn:stormpool:pool:1.0\"" in pool.get_xml().split("\n")[0]
    # changed in place, under the pool's own namespace declaration
    pool.stormpool_replica.policy = pool.stormpool_replica.POLICY_LINK
    pool.stormpool_replica.prepare = None
    assert_same_xml(pool.get_xml(), REPLICA_XML.replace(
        "<stormpool:replica policy='copy' prepare='eager'/>",
        "<stormpool:replica policy='link'/>"))
    assert "<stormpool:replica policy=\"link\"/>" in pool.get_xml()
    # and removed: the status stays
    pool.stormpool_replica.policy = None
    assert_same_xml(pool.get_xml(), REPLICA_XML.replace(
        "  <stormpool:replica policy='copy' prepare='eager'/>\n", ""))
    # a pool without the setting reads the defaults (None: not set) and
    # gets no element unless one is set
    plain = StoragePool(conn, parsexml=EXPECTED_POOL_XML)
    assert (plain.stormpool_replica.policy, plain.stormpool_replica.prepare) == \
        (None, None)
    assert plain.get_xml() == EXPECTED_POOL_XML, plain.get_xml()
    built = build_pool()
    built.stormpool_replica.policy = "none"
    assert_same_xml(built.get_xml(), EXPECTED_POOL_XML.replace(
        "</pool>",
        "<stormpool:replica xmlns:stormpool='urn:stormpool:pool:1.0' policy='none'/></pool>"))


@suite.step("a pool built with replica policy copy + prepare eager, defined through "
            "libvirt: pool-dumpxml --inactive shows <stormpool:replica policy='copy' "
            "prepare='eager'/>, and parses back to the same values")
def _():
    suite.cleanup_pool(REPLICA_POOL)
    pool = StoragePool(conn)
    pool.type = StoragePool.TYPE_STORMPOOL
    pool.name = REPLICA_POOL
    pool.source_path = os.path.join(root, "replica", "templates")
    pool.target_path = os.path.join(root, "replica", "instances")
    pool.stormpool_replica.policy = pool.stormpool_replica.POLICY_COPY
    pool.stormpool_replica.prepare = pool.stormpool_replica.PREPARE_EAGER
    pool.validate()
    pool.install()  # defines it only
    inactive = virsh("pool-dumpxml", "--inactive", REPLICA_POOL)
    assert "<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>" in inactive, \
        inactive
    assert "<stormpool:replica policy='copy' prepare='eager'/>" in inactive, inactive
    parsed = StoragePool(conn, parsexml=inactive)
    assert (parsed.stormpool_replica.policy, parsed.stormpool_replica.prepare) == \
        ("copy", "eager")
    # what virtinst writes back from it, libvirt takes as the same definition
    assert_same_xml(parsed.get_xml(), inactive)
    # a changed setting goes through too, and so does its removal
    parsed.stormpool_replica.policy = "link"
    parsed.stormpool_replica.prepare = None
    conn.storagePoolDefineXML(parsed.get_xml(), 0)
    inactive = virsh("pool-dumpxml", "--inactive", REPLICA_POOL)
    assert "<stormpool:replica policy='link'/>" in inactive, inactive
    parsed = StoragePool(conn, parsexml=inactive)
    parsed.stormpool_replica.policy = None
    conn.storagePoolDefineXML(parsed.get_xml(), 0)
    inactive = virsh("pool-dumpxml", "--inactive", REPLICA_POOL)
    assert "stormpool:replica" not in inactive, inactive
    virsh("pool-undefine", REPLICA_POOL)
    assert REPLICA_POOL not in pool_names()
    assert not os.path.exists(os.path.join(root, "replica"))  # never built


@suite.step("StoragePool.install defines, builds (both tiers) and starts the pool")
def _():
    suite.cleanup_pool(POOL)
    assert POOL not in pool_names()
    pool = build_pool()
    pool.validate()
    poolobj = pool.install(build=True, create=True)
    assert poolobj.isActive()
    assert os.path.isdir(primary) and os.path.isdir(secondary)
    assert POOL in pool_names()
    # libvirt's own XML of the pool parses back to the same tiers
    live = StoragePool(conn, parsexml=poolobj.XMLDesc(0))
    assert live.type == "stormpool"
    assert live.source_path == primary and live.target_path == secondary
    assert_same_xml(live.get_xml(), poolobj.XMLDesc(0))
    # ... and what virtinst writes back, libvirt takes as the same definition
    inactive = poolobj.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    roundtrip = StoragePool(conn, parsexml=inactive).get_xml()
    assert_same_xml(roundtrip, inactive)
    conn.storagePoolDefineXML(roundtrip, 0)
    again = StoragePool(conn, parsexml=lookup_pool().XMLDesc(
        libvirt.VIR_STORAGE_XML_INACTIVE))
    assert (again.type, again.name, again.uuid, again.source_path, again.target_path) == \
        ("stormpool", POOL, live.uuid, primary, secondary)
    # a template, made out of band and picked up by a refresh
    run(["qemu-img", "create", "-q", "-f", "qcow2", template_path, "64M"])
    poolobj.refresh(0)
    assert TEMPLATE in vol_names(POOL)


# ---- StorageVolume --------------------------------------------------------

def new_volume(name, capacity, backing_store=None):
    vol = StorageVolume(conn)
    vol.pool = lookup_pool()
    vol.name = name
    vol.capacity = capacity
    vol.allocation = 0
    vol.format = "qcow2"
    if backing_store:
        vol.backing_store = backing_store
    vol.validate()
    return vol


@suite.step("StorageVolume without a backing store creates an empty template in the source dir")
def _():
    vol = new_volume("spv-vi-empty.qcow2", 32 * MiB)
    volobj = vol.install(meter=None)
    path = volobj.path()
    assert path == os.path.join(primary, "spv-vi-empty.qcow2"), path
    info = qemu_img_info(path)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert info["virtual-size"] == 32 * MiB, info
    assert stray_pools() == []
    volobj.delete(0)
    assert not os.path.exists(path)


@suite.step("StorageVolume with the template's path as backing store creates an instance: "
            "a qcow2 overlay in the target dir backing onto the template")
def _():
    vol = new_volume("pc01.qcow2", 64 * MiB, backing_store=template_path)
    volobj = vol.install(meter=None)
    path = os.path.join(secondary, "pc01.qcow2")
    assert volobj.path() == path, volobj.path()
    assert vol.backing_format == "qcow2"  # detected from the template volume
    assert_overlay_of_template(path, size=64 * MiB)
    parsed = StorageVolume(conn, parsexml=volobj.XMLDesc(0))
    assert parsed.format == "qcow2" and parsed.backing_format == "qcow2"
    assert_backs_onto_template(parsed.backing_store)
    assert listdir(primary) == [TEMPLATE]


@suite.step("StorageVolume resolves backing_store=<volume name> in its own pool "
            "(no stray pool for the current directory)")
def _():
    vol = new_volume("pc02.qcow2", 64 * MiB, backing_store=TEMPLATE)
    volobj = vol.install(meter=None)
    assert vol.backing_store == template_path, vol.backing_store
    assert vol.backing_format == "qcow2"
    assert_overlay_of_template(volobj.path(), size=64 * MiB)
    assert stray_pools() == []


# ---- DeviceDisk -----------------------------------------------------------

@suite.step("DeviceDisk on an existing instance volume: type 'file', path in the secondary tier")
def _():
    poolobj = lookup_pool()
    disk = DeviceDisk(conn)
    disk.set_vol_object(poolobj.storageVolLookupByName("pc01.qcow2"), poolobj)
    disk.validate()
    assert disk.type == DeviceDisk.TYPE_FILE, disk.type
    assert disk.get_source_path() == os.path.join(secondary, "pc01.qcow2")
    assert disk.get_parent_pool().name() == POOL
    assert "<source file=\"%s\"/>" % os.path.join(secondary, "pc01.qcow2") \
        in disk.get_xml(), disk.get_xml()


@suite.step("DeviceDisk parsed from <disk type='volume'> keeps type 'volume' and "
            "resolves the instance in the secondary tier")
def _():
    xml = ("<disk type='volume' device='disk'>\n"
           "  <driver name='qemu' type='qcow2'/>\n"
           "  <source pool='%s' volume='pc01.qcow2'/>\n"
           "  <target dev='vda' bus='virtio'/>\n"
           "</disk>\n" % POOL)
    disk = DeviceDisk(conn, parsexml=xml)
    assert disk.type == DeviceDisk.TYPE_VOLUME
    disk.set_backend_for_existing_path()
    disk.validate()
    assert disk.type == DeviceDisk.TYPE_VOLUME
    assert disk.get_vol_object().path() == os.path.join(secondary, "pc01.qcow2")
    assert_same_xml(disk.get_xml(), xml)


@suite.step("DeviceDisk for new volumes: an instance goes to the secondary tier, "
            "a template to the primary tier, both type 'file'")
def _():
    poolobj = lookup_pool()
    cases = [("spv-vi-new-instance.qcow2", TEMPLATE, secondary),
             ("spv-vi-new-template.qcow2", None, primary)]
    for name, backing, tier in cases:
        disk = DeviceDisk(conn)
        disk.set_vol_install(DeviceDisk.build_vol_install(
            conn, name, poolobj, 0.0625, True, fmt="qcow2", backing_store=backing))
        path = os.path.join(tier, name)
        assert disk.type == DeviceDisk.TYPE_FILE, (name, disk.type)
        assert disk.get_source_path() == path, (name, disk.get_source_path())
        assert disk.wants_storage_creation()
        disk.validate()
        disk.build_storage(None)
        assert os.path.isfile(path), path
        if backing:
            assert_overlay_of_template(path, size=64 * MiB)
        else:
            info = qemu_img_info(path)
            assert "backing-filename" not in info and info["virtual-size"] == 64 * MiB
        delete_volume(name)
        assert not os.path.exists(path)


# ---- virt-install ---------------------------------------------------------

@suite.step("virt-install --import --disk vol=%s/pc01.qcow2 creates a domain on the instance"
            % POOL)
def _():
    suite.cleanup(remove_domain, DOM_VOL)
    virt_install("--name", DOM_VOL, "--import",
                 "--disk", "vol=%s/pc01.qcow2,bus=virtio" % POOL)
    assert virsh("domstate", DOM_VOL).strip() == "running"
    assert domain_disk(DOM_VOL) == ("file", os.path.join(secondary, "pc01.qcow2"), "qcow2")
    assert stray_pools() == []
    remove_domain(DOM_VOL)


@suite.step("virt-install --disk pool=%s,size=1,backing_store=%s,format=qcow2 --import "
            "creates an instance of the template and a domain on it" % (POOL, TEMPLATE))
def _():
    suite.cleanup(remove_domain, DOM_BACKING)
    suite.cleanup(delete_volume, DOM_BACKING + ".qcow2")
    before_vols = vol_names(POOL)
    virt_install("--name", DOM_BACKING, "--import",
                 "--disk", "pool=%s,size=1,backing_store=%s,format=qcow2,bus=virtio"
                 % (POOL, TEMPLATE))
    new = sorted(set(vol_names(POOL)) - set(before_vols))
    assert new == [DOM_BACKING + ".qcow2"], new
    path = os.path.join(secondary, new[0])
    assert_overlay_of_template(path, size=1 * GiB)
    assert domain_disk(DOM_BACKING) == ("file", path, "qcow2")
    assert virsh("domstate", DOM_BACKING).strip() == "running"
    assert stray_pools() == []
    remove_domain(DOM_BACKING)
    delete_volume(new[0])


@suite.step("virt-install --disk pool=%s,size=1,format=qcow2 --import gives the domain "
            "a new, empty template in the primary tier" % POOL)
def _():
    suite.cleanup(remove_domain, DOM_TEMPLATE)
    suite.cleanup(delete_volume, DOM_TEMPLATE + ".qcow2")
    virt_install("--name", DOM_TEMPLATE, "--import",
                 "--disk", "pool=%s,size=1,format=qcow2,bus=virtio" % POOL)
    path = os.path.join(primary, DOM_TEMPLATE + ".qcow2")
    info = qemu_img_info(path)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert domain_disk(DOM_TEMPLATE) == ("file", path, "qcow2")
    assert virsh("domstate", DOM_TEMPLATE).strip() == "running"
    remove_domain(DOM_TEMPLATE)
    delete_volume(DOM_TEMPLATE + ".qcow2")


@suite.step("cleanup: the pool's volumes, the pool and both tiers go away; "
            "virtinst made no other pool")
def _():
    assert remove_stray_pools() == []
    for dom in (DOM_VOL, DOM_BACKING, DOM_TEMPLATE):
        assert run(["virsh", "-q", "dominfo", dom], check=False)[0] != 0, dom
    for name in ("pc02.qcow2", "pc01.qcow2", TEMPLATE):
        virsh("vol-delete", "--pool", POOL, name)
    virsh("pool-destroy", POOL)
    virsh("pool-delete", POOL)
    virsh("pool-undefine", POOL)
    assert not os.path.exists(primary) and not os.path.exists(secondary)
    assert POOL not in pool_names()


watchdog.cancel()
suite.finish()
