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

One scenario per test. Each runs in a directory of its own (also its
current directory: a relative path virtinst does not resolve is taken
relative to it), with its own pool (spt-vi-*: installed by virtinst, with
the template win10.qcow2) and guests; whatever it made, and any pool
virtinst made behind its back for one of its directories (a failure), is
removed at its end. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_virtinst.py -k backing_store
"""

import collections
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import stormpool_client as sp
from stormpool_client import listdir, qemu_img_info, run, sha256, virsh as sp_virsh

# The patched tree of the virt-manager that goes with LIBVIRT
VM_TREE = sp.virt_manager_tree()
sys.path.insert(0, VM_TREE)

import libvirt  # noqa: E402  (Debian's binding, the private libvirt.so.0)
import virtinst  # noqa: E402
from virtinst import (DeviceDisk, StoragePool, StorageVolume,  # noqa: E402
                      VirtinstConnection)

TEMPLATE = "win10.qcow2"
MiB = 1024 * 1024
GiB = 1024 * MiB
VIRT_INSTALL_TIMEOUT = 180


def short(request, length=28):
    """The test's name, fit for pool, domain and volume names."""
    return re.sub(r"[^A-Za-z0-9]+", "-",
                  request.node.name.replace("test_", "", 1))[:length].strip("-")


def pool_names(conn):
    return sorted(p.name() for p in conn.listAllStoragePools())


def stray_pools(conn, root, own):
    """Pools that virtinst made behind our back for one of the test's
    directories (its tiers, or the current directory, which is the test's
    too), other than the test's own pools @own. Other pools come and go:
    the daemons are shared."""
    stray = []
    for pool in conn.listAllStoragePools():
        try:
            path = StoragePool(conn, parsexml=pool.XMLDesc(0)).target_path or ""
        except libvirt.libvirtError:
            continue  # undefined meanwhile by someone else
        if pool.name() not in own and (path + "/").startswith(root + "/"):
            stray.append(pool.name())
    return stray


def remove_pool(name):
    run(["virsh", "-q", "pool-destroy", name], check=False)
    run(["virsh", "-q", "pool-undefine", name], check=False)


def canon(xml):
    """XML in canonical form: attribute order, quotes and the place of the
    namespace declarations do not matter, everything else does."""
    return ET.canonicalize(xml_data=xml, strip_text=True)


def assert_same_xml(got, want):
    assert canon(got) == canon(want), "got:\n%s\nwant:\n%s" % (got, want)


def virt_install(cwd, *args):
    cmd = ["/usr/bin/python3", os.path.join(VM_TREE, "virt-install"),
           "--connect", "qemu:///system",
           "--virt-type", "qemu", "--memory", "64", "--vcpus", "1",
           "--network", "none", "--graphics", "none",
           "--osinfo", "detect=on,require=off", "--noautoconsole"] + list(args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=VIRT_INSTALL_TIMEOUT, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise AssertionError("virt-install did not finish within %d s" %
                             VIRT_INSTALL_TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError("virt-install failed (%d):\n%s" %
                             (proc.returncode, proc.stdout))
    return proc.stdout


def domain_disk(name):
    """(type, source file, driver type) of the domain's only disk."""
    xml = sp_virsh("dumpxml", name)
    disks = re.findall(r"<disk type='(\w+)' device='disk'>(.*?)</disk>", xml, re.S)
    assert len(disks) == 1, xml
    disktype, body = disks[0]
    src = re.search(r"<source file='([^']+)'", body)
    drv = re.search(r"<driver name='qemu' type='(\w+)'", body)
    return disktype, src and src.group(1), drv and drv.group(1)


def domain_exists(name):
    return run(["virsh", "-q", "dominfo", name], check=False)[0] == 0


# ---- fixtures ---------------------------------------------------------------

@pytest.fixture(scope="module")
def vconn(prefix):
    """A virtinst connection to the private daemons, for the module."""
    conn = VirtinstConnection("qemu:///system")
    conn.open(None, None)
    yield conn
    conn.close()


class Place:
    """The test's directory and tiers, and its pool's name."""

    def __init__(self, request, workdir):
        self.root = workdir
        self.name = "spt-vi-%s" % short(request)
        self.primary = os.path.join(workdir, "hdd", "templates")
        self.secondary = os.path.join(workdir, "ssd", "lab")
        self.template_path = os.path.join(self.primary, TEMPLATE)
        self.pools = [self.name]        # the test's own pools

    def expected_xml(self):
        return """<pool type="stormpool">
  <name>%s</name>
  <source>
    <dir path="%s"/>
  </source>
  <target>
    <path>%s</path>
  </target>
</pool>
""" % (self.name, self.primary, self.secondary)

    def build_pool(self, conn):
        """The StoragePool of the test's pool, as a user fills it in."""
        pool = StoragePool(conn)
        pool.type = StoragePool.TYPE_STORMPOOL
        pool.name = self.name
        pool.source_path = self.primary
        pool.target_path = self.secondary
        return pool

    def lookup(self, conn):
        return conn.storagePoolLookupByName(self.name)


@pytest.fixture
def place(request, vconn, workdir, monkeypatch):
    """The test's Place, its directory made the current one. At the end its
    pools go; no other pool for one of its directories may be left (one
    virtinst made behind its back), and none is."""
    monkeypatch.chdir(workdir)
    p = Place(request, workdir)
    remove_pool(p.name)             # left by an interrupted earlier run
    yield p
    stray = stray_pools(vconn, p.root, p.pools)
    for name in p.pools + stray:
        remove_pool(name)
    left = set(p.pools + stray) & set(pool_names(vconn))
    assert not left, "pools left: %s" % sorted(left)
    assert stray == [], "virtinst made pools for the test's directories: %s" % stray


@pytest.fixture
def vpool(place, vconn):
    """The test's pool installed by virtinst (defined, built, started), with
    a 64 MiB template win10.qcow2 made out of band and picked up by a
    refresh."""
    pool = place.build_pool(vconn)
    pool.validate()
    poolobj = pool.install(build=True, create=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", place.template_path, "64M"])
    poolobj.refresh(0)
    return place


@pytest.fixture
def vdomains(request):
    """names(suffix) -> a domain name spt-vi-<test>-<suffix> for
    virt-install; every such domain is destroyed and undefined at the end,
    and none is left."""
    made = []

    def name(suffix):
        n = "spt-vi-%s-%s" % (short(request, 22), suffix)
        sp.remove_domain(n)
        made.append(n)
        return n
    yield name
    for n in made:
        sp.remove_domain(n)
    assert not [n for n in made if domain_exists(n)], made


def assert_backs_onto_template(place, backing):
    """@backing is the template, or (with the pool's replica policy) one of
    the template's replicas in the secondary tier that the pool lists, with
    the template's data."""
    assert backing in sp.template_data_paths(place.name, place.template_path), \
        "%s is neither the template %s nor one of its replicas" % (backing,
                                                                   place.template_path)
    assert os.path.samefile(backing, place.template_path) or \
        sha256(backing) == sha256(place.template_path), backing


def assert_overlay_of_template(place, path, size=None):
    """@path is a qcow2 overlay in the secondary tier backing onto the
    template (qemu-img info)."""
    assert os.path.dirname(path) == place.secondary, path
    info = qemu_img_info(path)
    assert info["format"] == "qcow2", info
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    assert backing, "%s has no backing file: %s" % (path, info)
    assert os.path.isabs(backing), info
    assert_backs_onto_template(place, backing)
    assert info.get("backing-filename-format") == "qcow2", info
    if size is not None:
        assert info["virtual-size"] == size, info
    return info


def new_volume(conn, place, name, capacity, backing_store=None):
    vol = StorageVolume(conn)
    vol.pool = place.lookup(conn)
    vol.name = name
    vol.capacity = capacity
    vol.allocation = 0
    vol.format = "qcow2"
    if backing_store:
        vol.backing_store = backing_store
    vol.validate()
    return vol


Instance = collections.namedtuple("Instance", "vol volobj path")


def instance_by_path(conn, place, name="pc01.qcow2"):
    """An instance made by StorageVolume with the template's path as
    backing store."""
    vol = new_volume(conn, place, name, 64 * MiB, backing_store=place.template_path)
    volobj = vol.install(meter=None)
    return Instance(vol, volobj, os.path.join(place.secondary, name))


# ---- StoragePool ----------------------------------------------------------

def test_virtinst_of_the_patched_tree_knows_stormpool(vconn):
    """virtinst is imported from the patched tree, talks to the private
    libvirt and knows TYPE_STORMPOOL."""
    print("# virtinst of %s" % os.path.relpath(VM_TREE, sp.TOP))
    assert os.path.dirname(os.path.abspath(virtinst.__file__)) == \
        os.path.join(VM_TREE, "virtinst"), virtinst.__file__
    assert StoragePool.TYPE_STORMPOOL == "stormpool"
    assert libvirt.__file__.startswith("/usr/lib/python3"), libvirt.__file__
    assert StoragePool.pool_type_is_supported(vconn, "stormpool") is True
    assert StoragePool.pool_type_is_supported(vconn, "dir") is True
    assert StoragePool.pool_type_is_supported(vconn, "no-such-type") is False


def test_pool_xml_has_source_dir_and_target_path(vconn, place):
    """StoragePool builds a stormpool pool's XML: <source><dir path> and
    <target><path>; new templates go to the source dir, instances to the
    target; validate() gives a stormpool pool no default target."""
    pool = place.build_pool(vconn)
    assert pool.supports_source_path() and pool.supports_target_path()
    assert not pool.supports_hosts() and not pool.supports_format()
    assert not pool.supports_source_name()
    assert pool.get_disk_type() == StorageVolume.TYPE_FILE
    pool.validate()
    assert pool.get_xml() == place.expected_xml(), pool.get_xml()
    # where new volumes go: templates to the source dir, instances to the target
    assert pool.get_new_volume_dir() == place.primary
    assert pool.get_new_volume_dir(backing_store=TEMPLATE) == place.secondary
    # validate() leaves a stormpool pool's target alone (no default path)
    nopath = place.build_pool(vconn)
    nopath.target_path = None
    nopath.validate()
    assert nopath.target_path is None


PARSE_XML = """<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>
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


def test_pool_xml_with_the_namespace_round_trips(vconn):
    """StoragePool parses stormpool XML with the stormpool namespace and
    round-trips it; a changed property touches only its element."""
    pool = StoragePool(vconn, parsexml=PARSE_XML)
    assert pool.type == "stormpool"
    assert pool.name == "spv-vi-parse"
    assert pool.source_path == "/srv/hdd/templates"
    assert pool.target_path == "/srv/ssd/lab"
    assert pool.permissions.mode == "0755"
    assert_same_xml(pool.get_xml(), PARSE_XML)
    pool.target_path = "/srv/ssd/lab2"
    pool.source_path = "/srv/hdd/templates2"
    assert_same_xml(pool.get_xml(),
                    PARSE_XML.replace("/srv/ssd/lab<", "/srv/ssd/lab2<")
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


def test_replica_setting_is_read_and_written(vconn, place):
    """StoragePool reads and writes <stormpool:replica policy= prepare=/>;
    round trips keep the element and the xmlns declaration; a pool without
    the setting reads None and gets no element unless one is set."""
    pool = StoragePool(vconn, parsexml=REPLICA_XML)
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
    plain = StoragePool(vconn, parsexml=place.expected_xml())
    assert (plain.stormpool_replica.policy, plain.stormpool_replica.prepare) == \
        (None, None)
    assert plain.get_xml() == place.expected_xml(), plain.get_xml()
    built = place.build_pool(vconn)
    built.stormpool_replica.policy = "none"
    assert_same_xml(built.get_xml(), place.expected_xml().replace(
        "</pool>",
        "<stormpool:replica xmlns:stormpool='urn:stormpool:pool:1.0' policy='none'/></pool>"))


def test_replica_setting_survives_libvirt(vconn, place):
    """A pool built with replica policy copy + prepare eager, defined
    through libvirt: pool-dumpxml --inactive shows <stormpool:replica
    policy='copy' prepare='eager'/> and parses back to the same values; a
    change and a removal of the setting go through too."""
    name = place.name + "-replica"
    place.pools.append(name)
    remove_pool(name)
    pool = StoragePool(vconn)
    pool.type = StoragePool.TYPE_STORMPOOL
    pool.name = name
    pool.source_path = os.path.join(place.root, "replica", "templates")
    pool.target_path = os.path.join(place.root, "replica", "instances")
    pool.stormpool_replica.policy = pool.stormpool_replica.POLICY_COPY
    pool.stormpool_replica.prepare = pool.stormpool_replica.PREPARE_EAGER
    pool.validate()
    pool.install()  # defines it only
    inactive = sp_virsh("pool-dumpxml", "--inactive", name)
    assert "<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>" in inactive, \
        inactive
    assert "<stormpool:replica policy='copy' prepare='eager'/>" in inactive, inactive
    parsed = StoragePool(vconn, parsexml=inactive)
    assert (parsed.stormpool_replica.policy, parsed.stormpool_replica.prepare) == \
        ("copy", "eager")
    # what virtinst writes back from it, libvirt takes as the same definition
    assert_same_xml(parsed.get_xml(), inactive)
    parsed.stormpool_replica.policy = "link"
    parsed.stormpool_replica.prepare = None
    vconn.storagePoolDefineXML(parsed.get_xml(), 0)
    inactive = sp_virsh("pool-dumpxml", "--inactive", name)
    assert "<stormpool:replica policy='link'/>" in inactive, inactive
    parsed = StoragePool(vconn, parsexml=inactive)
    parsed.stormpool_replica.policy = None
    vconn.storagePoolDefineXML(parsed.get_xml(), 0)
    inactive = sp_virsh("pool-dumpxml", "--inactive", name)
    assert "stormpool:replica" not in inactive, inactive
    sp_virsh("pool-undefine", name)
    assert name not in pool_names(vconn)
    assert not os.path.exists(os.path.join(place.root, "replica"))  # never built


def test_install_defines_builds_and_starts_the_pool(vconn, place):
    """StoragePool.install defines, builds (both tiers) and starts the pool;
    libvirt's XML of it parses back to the same tiers, and what virtinst
    writes back libvirt takes as the same definition; a template made out
    of band is listed after a refresh."""
    assert place.name not in pool_names(vconn)
    pool = place.build_pool(vconn)
    pool.validate()
    poolobj = pool.install(build=True, create=True)
    assert poolobj.isActive()
    assert os.path.isdir(place.primary) and os.path.isdir(place.secondary)
    assert place.name in pool_names(vconn)
    live = StoragePool(vconn, parsexml=poolobj.XMLDesc(0))
    assert live.type == "stormpool"
    assert live.source_path == place.primary and live.target_path == place.secondary
    assert_same_xml(live.get_xml(), poolobj.XMLDesc(0))
    inactive = poolobj.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    roundtrip = StoragePool(vconn, parsexml=inactive).get_xml()
    assert_same_xml(roundtrip, inactive)
    vconn.storagePoolDefineXML(roundtrip, 0)
    again = StoragePool(vconn, parsexml=place.lookup(vconn).XMLDesc(
        libvirt.VIR_STORAGE_XML_INACTIVE))
    assert (again.type, again.name, again.uuid, again.source_path, again.target_path) == \
        ("stormpool", place.name, live.uuid, place.primary, place.secondary)
    run(["qemu-img", "create", "-q", "-f", "qcow2", place.template_path, "64M"])
    poolobj.refresh(0)
    assert TEMPLATE in sp.vol_names(place.name)


# ---- StorageVolume --------------------------------------------------------

def test_volume_without_backing_store_is_a_template(vconn, vpool):
    """StorageVolume without a backing store creates an empty template in
    the source dir (and no pool elsewhere); it deletes."""
    vol = new_volume(vconn, vpool, "spv-vi-empty.qcow2", 32 * MiB)
    volobj = vol.install(meter=None)
    path = volobj.path()
    assert path == os.path.join(vpool.primary, "spv-vi-empty.qcow2"), path
    info = qemu_img_info(path)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert info["virtual-size"] == 32 * MiB, info
    assert stray_pools(vconn, vpool.root, vpool.pools) == []
    volobj.delete(0)
    assert not os.path.exists(path)


def test_volume_backing_onto_the_template_path_is_an_instance(vconn, vpool):
    """StorageVolume with the template's path as backing store creates an
    instance: a qcow2 overlay in the target dir backing onto the template,
    whose XML virtinst parses back."""
    inst = instance_by_path(vconn, vpool)
    assert inst.volobj.path() == inst.path, inst.volobj.path()
    assert inst.vol.backing_format == "qcow2"  # detected from the template volume
    assert_overlay_of_template(vpool, inst.path, size=64 * MiB)
    parsed = StorageVolume(vconn, parsexml=inst.volobj.XMLDesc(0))
    assert parsed.format == "qcow2" and parsed.backing_format == "qcow2"
    assert_backs_onto_template(vpool, parsed.backing_store)
    assert listdir(vpool.primary) == [TEMPLATE]


def test_backing_store_by_volume_name(vconn, vpool):
    """StorageVolume resolves backing_store=<volume name> in its own pool
    (no stray pool for the current directory)."""
    vol = new_volume(vconn, vpool, "pc02.qcow2", 64 * MiB, backing_store=TEMPLATE)
    volobj = vol.install(meter=None)
    assert vol.backing_store == vpool.template_path, vol.backing_store
    assert vol.backing_format == "qcow2"
    assert_overlay_of_template(vpool, volobj.path(), size=64 * MiB)
    assert stray_pools(vconn, vpool.root, vpool.pools) == []


# ---- DeviceDisk -----------------------------------------------------------

def test_device_disk_on_an_existing_instance(vconn, vpool):
    """DeviceDisk on an existing instance volume: type 'file', its path in
    the secondary tier."""
    instance_by_path(vconn, vpool)
    poolobj = vpool.lookup(vconn)
    disk = DeviceDisk(vconn)
    disk.set_vol_object(poolobj.storageVolLookupByName("pc01.qcow2"), poolobj)
    disk.validate()
    path = os.path.join(vpool.secondary, "pc01.qcow2")
    assert disk.type == DeviceDisk.TYPE_FILE, disk.type
    assert disk.get_source_path() == path
    assert disk.get_parent_pool().name() == vpool.name
    assert "<source file=\"%s\"/>" % path in disk.get_xml(), disk.get_xml()


def test_device_disk_of_type_volume(vconn, vpool):
    """DeviceDisk parsed from <disk type='volume'> keeps type 'volume' and
    resolves the instance in the secondary tier."""
    instance_by_path(vconn, vpool)
    xml = ("<disk type='volume' device='disk'>\n"
           "  <driver name='qemu' type='qcow2'/>\n"
           "  <source pool='%s' volume='pc01.qcow2'/>\n"
           "  <target dev='vda' bus='virtio'/>\n"
           "</disk>\n" % vpool.name)
    disk = DeviceDisk(vconn, parsexml=xml)
    assert disk.type == DeviceDisk.TYPE_VOLUME
    disk.set_backend_for_existing_path()
    disk.validate()
    assert disk.type == DeviceDisk.TYPE_VOLUME
    assert disk.get_vol_object().path() == os.path.join(vpool.secondary, "pc01.qcow2")
    assert_same_xml(disk.get_xml(), xml)


@pytest.mark.parametrize("kind", ["instance", "template"])
def test_device_disk_for_a_new_volume(vconn, vpool, kind):
    """DeviceDisk for a new volume: an instance (with a backing store) goes
    to the secondary tier, a template to the primary tier, both type
    'file'; the storage it builds is what it said."""
    poolobj = vpool.lookup(vconn)
    name = "spv-vi-new-%s.qcow2" % kind
    backing, tier = {"instance": (TEMPLATE, vpool.secondary),
                     "template": (None, vpool.primary)}[kind]
    disk = DeviceDisk(vconn)
    disk.set_vol_install(DeviceDisk.build_vol_install(
        vconn, name, poolobj, 0.0625, True, fmt="qcow2", backing_store=backing))
    path = os.path.join(tier, name)
    assert disk.type == DeviceDisk.TYPE_FILE, (name, disk.type)
    assert disk.get_source_path() == path, (name, disk.get_source_path())
    assert disk.wants_storage_creation()
    disk.validate()
    disk.build_storage(None)
    assert os.path.isfile(path), path
    if backing:
        assert_overlay_of_template(vpool, path, size=64 * MiB)
    else:
        info = qemu_img_info(path)
        assert "backing-filename" not in info and info["virtual-size"] == 64 * MiB
    sp_virsh("vol-delete", "--pool", vpool.name, name)
    assert not os.path.exists(path)


# ---- virt-install ---------------------------------------------------------

def test_virt_install_import_on_an_instance_volume(vconn, vpool, vdomains):
    """virt-install --import --disk vol=POOL/pc01.qcow2 creates a running
    domain whose disk is the instance's file."""
    instance_by_path(vconn, vpool)
    dom = vdomains("vol")
    virt_install(vpool.root, "--name", dom, "--import",
                 "--disk", "vol=%s/pc01.qcow2,bus=virtio" % vpool.name)
    assert sp_virsh("domstate", dom).strip() == "running"
    assert domain_disk(dom) == ("file", os.path.join(vpool.secondary, "pc01.qcow2"), "qcow2")
    assert stray_pools(vconn, vpool.root, vpool.pools) == []


def test_virt_install_instance_of_a_backing_store(vconn, vpool, vdomains):
    """virt-install --disk pool=POOL,size=1,backing_store=TEMPLATE,format=qcow2
    --import creates an instance of the template (1 GiB) and a running
    domain on it."""
    dom = vdomains("backing")
    before_vols = sp.vol_names(vpool.name)
    virt_install(vpool.root, "--name", dom, "--import",
                 "--disk", "pool=%s,size=1,backing_store=%s,format=qcow2,bus=virtio"
                 % (vpool.name, TEMPLATE))
    new = sorted(set(sp.vol_names(vpool.name)) - set(before_vols))
    assert new == [dom + ".qcow2"], new
    path = os.path.join(vpool.secondary, new[0])
    assert_overlay_of_template(vpool, path, size=1 * GiB)
    assert domain_disk(dom) == ("file", path, "qcow2")
    assert sp_virsh("domstate", dom).strip() == "running"
    assert stray_pools(vconn, vpool.root, vpool.pools) == []


def test_virt_install_new_template(vconn, vpool, vdomains):
    """virt-install --disk pool=POOL,size=1,format=qcow2 --import gives the
    domain a new, empty template in the primary tier."""
    dom = vdomains("template")
    virt_install(vpool.root, "--name", dom, "--import",
                 "--disk", "pool=%s,size=1,format=qcow2,bus=virtio" % vpool.name)
    path = os.path.join(vpool.primary, dom + ".qcow2")
    info = qemu_img_info(path)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    assert domain_disk(dom) == ("file", path, "qcow2")
    assert sp_virsh("domstate", dom).strip() == "running"


# ---- the end ---------------------------------------------------------------

def test_pool_deletes_with_its_tiers(vconn, vpool):
    """The pool's volumes (instances by path and by name, the template)
    delete, pool-delete removes both tiers, and the pool undefines;
    virtinst made no other pool."""
    instance_by_path(vconn, vpool)
    new_volume(vconn, vpool, "pc02.qcow2", 64 * MiB, backing_store=TEMPLATE).install(meter=None)
    assert stray_pools(vconn, vpool.root, vpool.pools) == []
    for name in ("pc02.qcow2", "pc01.qcow2", TEMPLATE):
        sp_virsh("vol-delete", "--pool", vpool.name, name)
    sp_virsh("pool-destroy", vpool.name)
    sp_virsh("pool-delete", vpool.name)
    sp_virsh("pool-undefine", vpool.name)
    assert not os.path.exists(vpool.primary) and not os.path.exists(vpool.secondary)
    assert vpool.name not in pool_names(vconn)
