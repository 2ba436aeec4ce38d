"""Stateless desktops: <transient/> disks on stormpool volumes.

A guest whose <disk type='volume'> has <transient/> gets, at each start, a
throw-away qcow2 layer over the volume, which libvirt deletes when QEMU
ends (libvirt patch 0009 accepts it on volumes that are files). Without a
transient tier the layer lies next to the volume, VOLUME.TRANSIENT-DOMAIN
in the secondary tier; with <stormpool:transient tier='DIR' cap='SIZE'/>
it is made in DIR (a RAM disk, say), whose usage pool-dumpxml shows and
libvirt checks: a start that finds less than 1 MiB of the cap left is
refused. A layer left behind by a crash never blocks a start: the guest's
start replaces its own, and pool-refresh removes those no QEMU holds.

Guests are firmware-only (SeaBIOS, TCG, 64 MiB): QEMU opens the disk's
whole chain at start, and writes are made through its block layer with
HMP's qemu-io. One scenario per test, each with its own pool, template and
guests, run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_stateless.py -k full

The test marked disruptive kills the shared daemons and QEMUs with
SIGKILL, and starts the daemons again.
"""

import glob
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import qemu_img_info, refused, sha256, wait_for

MiB = 1024 * 1024
TEMPLATE_WRITES = [(0xab, 0, 4 * MiB), (0xcd, 32 * MiB, MiB)]
NS = {"sp": "urn:stormpool:pool:1.0"}
GRACE = 30          # SP_TRANSIENT_LAYER_GRACE_SECONDS


def stateless_xml(name, pool, volume, share=False):
    """A firmware-only guest whose vda is the volume @volume of @pool with
    <transient/> (shareBacking='yes' with @share: libvirt hotplugs such a
    disk after QEMU started, which needs ACPI on the 'pc' machine)."""
    transient = "<transient shareBacking='yes'/>" if share else "<transient/>"
    return sp.firmware_guest_xml(name, pool, volume, disk_extra=transient, acpi=share)


class Room:
    """A pool with a template tpl.qcow2 and instances, and its stateless
    guests."""

    def __init__(self, conn, pool, template, request):
        self.conn = conn
        self.pool = pool
        self.template = template
        self.prefix = "spt-sl-%s" % re.sub(r"[^A-Za-z0-9]+", "-",
                                           request.node.name)[5:24].strip("-")
        self.guests = []

    def instance(self, name):
        sp.virsh("vol-create-as", self.pool.name, name, str(64 * MiB), "--format", "qcow2",
                 "--backing-vol", "tpl.qcow2", "--backing-vol-format", "qcow2")
        return self.pool.path(name)

    def define(self, volume, share=False):
        name = "%s-%d" % (self.prefix, len(self.guests) + 1)
        sp.remove_domain(name)
        self.guests.append(name)
        self.conn.defineXML(stateless_xml(name, self.pool.name, volume, share))
        return name

    def start(self, volume, share=False):
        name = self.define(volume, share)
        self.conn.lookupByName(name).create()
        return name

    def state(self, name):
        return self.conn.lookupByName(name).state()[0]

    def tier_status(self):
        """The transient tier in pool-dumpxml's live status: (path,
        capacity, allocation, available)."""
        xml = ET.fromstring(self.pool.xml())
        tier = xml.find("sp:tiers/sp:tier[@name='transient']", NS)
        assert tier is not None, self.pool.xml()
        return (tier.get("path"),) + tuple(int(tier.findtext("sp:" + e, namespaces=NS))
                                           for e in ("capacity", "allocation", "available"))


@pytest.fixture
def room(request, conn, pool, template, workdir):
    """room(extra="", replica="policy='none'") -> Room: a running pool
    (by default, policy 'none': instances back onto the template) with
    @extra in its XML, a 64 MiB template with known data; its guests are
    destroyed and undefined at the end of the test."""
    made = []

    def make(extra="", replica="policy='none'"):
        p = pool(replica=replica, start=False, extra=extra)
        t = template(p.template_path("tpl.qcow2"), 64 * MiB, TEMPLATE_WRITES)
        p.start()
        r = Room(conn, p, t, request)
        made.append(r)
        return r
    yield make
    for r in made:
        for name in r.guests:
            sp.remove_domain(name)


def tier_xml(path, cap):
    return "<stormpool:transient tier='%s' cap='%s'/>" % (path, cap)


def layers(directory):
    return sorted(f for f in os.listdir(directory) if ".TRANSIENT-" in f)


def qemu_io_hmp(dom, command):
    out = sp.virsh("qemu-monitor-command", dom, "--hmp",
                   'qemu-io -d virtio-disk0/virtio-backend "%s"' % command)
    return out


# ---- without a transient tier --------------------------------------------------------

def test_layer_next_to_the_instance(room):
    """A <transient/> volume disk starts; its layer is INSTANCE.TRANSIENT-DOMAIN
    in the secondary tier over the instance, takes the guest's writes, and
    goes when the guest stops; the instance never changed."""
    r = room()
    pc01 = r.instance("pc01.qcow2")
    before = sha256(pc01)
    dom = r.start("pc01.qcow2")
    layer = pc01 + ".TRANSIENT-" + dom
    assert layers(r.pool.secondary) == [os.path.basename(layer)]
    assert qemu_img_info(layer)["backing-filename"] == pc01
    out = qemu_io_hmp(dom, "write -P 0x5a 0 1M")
    assert "rror" not in out, out
    r.conn.lookupByName(dom).destroy()
    assert layers(r.pool.secondary) == []
    assert sha256(pc01) == before


# ---- the transient tier --------------------------------------------------------------

def test_layer_in_the_transient_tier(room, tmpfs):
    """With a transient tier the layer is made there, not in the secondary
    tier; pool-dumpxml shows the tier with the cap as its capacity and the
    layer's bytes as its allocation; the layer goes with the guest."""
    tier = os.path.join(tmpfs("64m"), "lab-tmp")
    r = room(tier_xml(tier, "32M"))
    r.instance("pc01.qcow2")
    dom = r.start("pc01.qcow2")
    assert layers(tier) == ["pc01.qcow2.TRANSIENT-" + dom]
    assert layers(r.pool.secondary) == []
    layer = os.path.join(tier, layers(tier)[0])
    assert qemu_img_info(layer)["backing-filename"] == r.pool.path("pc01.qcow2")
    out = qemu_io_hmp(dom, "write -P 0x5a 0 4M")
    assert "rror" not in out, out
    used = os.stat(layer).st_blocks * 512
    assert r.tier_status() == (tier, 32 * MiB, used, 32 * MiB - used)
    r.conn.lookupByName(dom).destroy()
    assert layers(tier) == []
    assert r.tier_status() == (tier, 32 * MiB, 0, 32 * MiB)


def test_a_room_shares_one_instance(room, tmpfs):
    """Three guests with <transient shareBacking='yes'/> on one instance run
    at once, each on its own layer in the tier over the shared instance,
    which cannot be deleted meanwhile and never changes."""
    tier = os.path.join(tmpfs("64m"), "lab-tmp")
    r = room(tier_xml(tier, "32M"))
    pc01 = r.instance("pc01.qcow2")
    before = sha256(pc01)
    doms = [r.start("pc01.qcow2", share=True) for _ in range(3)]
    assert layers(tier) == sorted("pc01.qcow2.TRANSIENT-" + d for d in doms)
    for d in doms:
        assert r.state(d) == libvirt.VIR_DOMAIN_RUNNING
        out = qemu_io_hmp(d, "write -P 0x11 0 1M")
        assert "rror" not in out, out
    with refused(libvirt.VIR_ERR_OPERATION_INVALID):
        r.pool.vol("pc01.qcow2").delete(0)
    for d in doms:
        r.conn.lookupByName(d).destroy()
    assert layers(tier) == []
    assert sha256(pc01) == before


def test_a_full_tier_refuses_a_start(room, workdir):
    """When less than 1 MiB of the cap is left, the start is refused before
    QEMU runs, naming the disk, the tier and the pool; no layer is made.
    Room made again, the guest starts."""
    tier = os.path.join(workdir, "lab-tmp")
    r = room(tier_xml(tier, "2M"))
    r.instance("pc01.qcow2")
    filler = os.path.join(tier, "filler")
    with open(filler, "wb") as f:
        f.write(b"\1" * (MiB + MiB // 2))
    assert r.tier_status()[3] == 0
    dom = r.define("pc01.qcow2")
    with refused(libvirt.VIR_ERR_OPERATION_FAILED,
                 "operation failed: no room for the overlay of transient disk 'vda' in "
                 "the transient tier '%s' of storage pool '%s'" % (tier, r.pool.name)):
        r.conn.lookupByName(dom).create()
    assert r.state(dom) == libvirt.VIR_DOMAIN_SHUTOFF
    assert sorted(os.listdir(tier)) == ["filler"]
    os.unlink(filler)
    r.conn.lookupByName(dom).create()
    assert layers(tier) == ["pc01.qcow2.TRANSIENT-" + dom]


def test_a_full_file_system_fails_writes_only(room, tmpfs):
    """A tier whose file system fills (a tmpfs smaller than the cap): the
    write that does not fit fails with ENOSPC (a guest's own disk writes
    would pause it: QEMU's werror=enospc), the guest still runs, and
    pool-dumpxml still answers; its instance never changed."""
    tier = os.path.join(tmpfs("8m"), "lab-tmp")
    r = room(tier_xml(tier, "1G"))
    pc01 = r.instance("pc01.qcow2")
    before = sha256(pc01)
    dom = r.start("pc01.qcow2")
    qemu_io_hmp(dom, "write -P 0x5a 0 16M")
    # HMP's qemu-io reports a failed write on QEMU's stderr, the guest's log
    log = os.path.join(os.environ["STORMPOOL_PREFIX"], "var", "log", "libvirt", "qemu",
                       dom + ".log")
    wait_for(lambda: "write failed: No space left on device" in open(log).read(), 10,
             "the failed write in %s" % log)
    assert r.state(dom) == libvirt.VIR_DOMAIN_RUNNING
    assert r.tier_status()[0] == tier
    r.conn.lookupByName(dom).destroy()
    assert layers(tier) == []
    assert sha256(pc01) == before


# ---- crashes -----------------------------------------------------------------------

def kill_everything(prefix, doms):
    """SIGKILL every private daemon, then the QEMUs of @doms: the daemons
    never see their guests end, as in a crash."""
    for pidfile in glob.glob(os.path.join(prefix, "var", "run", "*.pid")):
        with open(pidfile) as f:
            pid = int(f.read().strip() or 0)
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for dom in doms:
        with open(os.path.join(prefix, "var", "run", "libvirt", "qemu", dom + ".pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)


@pytest.mark.disruptive
@pytest.mark.time_limit(240)
def test_no_stale_layer_blocks_a_start(room, workdir, daemons, prefix):
    """Stateless guests run; every daemon and every QEMU is killed with
    SIGKILL, the daemons start again: the layers stay, but each guest
    starts again with no admin step (its start replaces its own layer), and
    pool-refresh removes the layer of a guest nobody starts, once no QEMU
    holds it and it is older than the 30 s a start may take to open it."""
    tier = os.path.join(workdir, "lab-tmp")
    r = room(tier_xml(tier, "64M"))
    r.instance("pc01.qcow2")
    r.instance("pc02.qcow2")
    doms = [r.start("pc01.qcow2", share=True), r.start("pc01.qcow2", share=True),
            r.start("pc02.qcow2")]
    made = time.time()
    kill_everything(prefix, doms)
    daemons.start()
    conn = sp.connect()
    r.conn = conn
    wait_for(lambda: all(r.state(d) == libvirt.VIR_DOMAIN_SHUTOFF for d in doms), 30,
             "the killed guests shown shut off")
    stale = layers(tier)
    assert stale == sorted(os.path.basename(r.pool.path(v)) + ".TRANSIENT-" + d
                           for v, d in zip(("pc01.qcow2", "pc01.qcow2", "pc02.qcow2"), doms))
    for d in doms[:2]:
        conn.lookupByName(d).create()
    assert layers(tier) == stale
    time.sleep(max(0, made + GRACE + 2 - time.time()))
    sp.refresh_pool(conn.storagePoolLookupByName(r.pool.name))
    assert layers(tier) == stale[:2]
    for d in doms[:2]:
        conn.lookupByName(d).destroy()
    assert layers(tier) == []


# ---- a room on the template itself -------------------------------------------------

def current_replica(pool, template):
    """The replica pool-dumpxml lists as the one new instances of @template
    get (current='yes'), and its format; (None, None) if there is none."""
    xml = ET.fromstring(pool.xml())
    for replica in xml.findall("sp:replicas/sp:replica", NS):
        if replica.get("template") == template and replica.get("current") == "yes":
            return replica.get("path"), replica.get("format")
    return None, None


def qemu_open_files(dom):
    """The files the QEMU of guest @dom holds open."""
    with open(os.path.join(sp.prefix(), "var", "run", "libvirt", "qemu", dom + ".pid")) as f:
        pid = int(f.read().strip())
    fds = "/proc/%d/fd" % pid
    return {os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds)}


def test_a_room_on_the_template_reads_its_replica(room, tmpfs):
    """Three guests with <transient shareBacking='yes'/> on the template
    itself (no instance) read it through the replica the pool keeps
    ready (prepare='eager'), listed as current in pool-dumpxml: each layer
    in the transient tier backs onto the replica, no QEMU opens the
    template, whose bytes never change; the layers keep the template
    while they run, and go when the guests stop."""
    tier = os.path.join(tmpfs("64m"), "lab-tmp")
    r = room(tier_xml(tier, "32M"), replica="policy='copy' prepare='eager'")
    wait_for(lambda: current_replica(r.pool, "tpl.qcow2")[0], 60, "the eager replica")
    replica, fmt = current_replica(r.pool, "tpl.qcow2")
    assert fmt == "qcow2"
    template = r.pool.template_path("tpl.qcow2")
    before = sha256(template)
    doms = [r.start("tpl.qcow2", share=True) for _ in range(3)]
    assert layers(tier) == sorted("tpl.qcow2.TRANSIENT-" + d for d in doms)
    for d in doms:
        assert qemu_img_info(os.path.join(tier, "tpl.qcow2.TRANSIENT-" + d))[
            "backing-filename"] == replica
        files = qemu_open_files(d)
        assert replica in files and template not in files, files
        out = qemu_io_hmp(d, "write -P 0x11 0 1M")
        assert "rror" not in out, out
    with refused(libvirt.VIR_ERR_OPERATION_INVALID) as err:
        r.pool.vol("tpl.qcow2").delete(0)
    assert ("cannot delete template 'tpl.qcow2': 3 instance(s) depend on it: %s" %
            ", ".join(sorted("tpl.qcow2.TRANSIENT-" + d for d in doms))) in err.message
    for d in doms:
        r.conn.lookupByName(d).destroy()
    assert layers(tier) == []
    assert sha256(template) == before


def test_a_guest_on_the_template_without_tier_layers_in_secondary(room):
    """Without a transient tier, the layer of a guest on the template goes
    to the secondary tier (named after the template), not next to the
    replica, and backs onto the replica."""
    r = room(replica="policy='copy' prepare='eager'")
    wait_for(lambda: current_replica(r.pool, "tpl.qcow2")[0], 60, "the eager replica")
    replica, _ = current_replica(r.pool, "tpl.qcow2")
    dom = r.start("tpl.qcow2", share=True)
    layer = r.pool.path("tpl.qcow2.TRANSIENT-" + dom)
    assert qemu_img_info(layer)["backing-filename"] == replica
    assert layers(os.path.dirname(replica)) == []
    r.conn.lookupByName(dom).destroy()
    assert not os.path.exists(layer)


def test_a_template_without_share_backing_is_refused(room, tmpfs):
    """Without shareBacking='yes' QEMU would open the template for writing:
    the start is refused with a sentence naming the template and the pool,
    and nothing is left in the tiers."""
    tier = os.path.join(tmpfs("64m"), "lab-tmp")
    r = room(tier_xml(tier, "32M"))
    template = r.pool.template_path("tpl.qcow2")
    before = sha256(template)
    dom = r.define("tpl.qcow2")
    with refused(libvirt.VIR_ERR_CONFIG_UNSUPPORTED) as err:
        r.conn.lookupByName(dom).create()
    assert err.message == (
        "unsupported configuration: transient disk 'vda' on template 'tpl.qcow2' of "
        "storage pool '%s' needs <transient shareBacking='yes'/>: the pool's instances "
        "share the template, and without it QEMU opens the image for writing" % r.pool.name)
    assert layers(tier) == [] and layers(r.pool.primary) == []
    assert sha256(template) == before


# ---- virt-install ------------------------------------------------------------------

def test_virt_install_makes_a_stateless_desktop(room, tmpfs):
    """virt-install --import with a volume disk (source.pool=, source.volume=)
    and transient=on makes a stateless desktop whose layer is in the tier."""
    tier = os.path.join(tmpfs("64m"), "lab-tmp")
    r = room(tier_xml(tier, "32M"))
    r.instance("pc01.qcow2")
    dom = r.prefix + "-vi"
    sp.remove_domain(dom)
    r.guests.append(dom)
    subprocess.run(["virt-install", "--connect", "qemu:///system", "--name", dom,
                    "--virt-type", "qemu", "--memory", "64", "--vcpus", "1", "--import",
                    "--disk", "type=volume,source.pool=%s,source.volume=pc01.qcow2,"
                    "driver.type=qcow2,bus=virtio,transient=on" % r.pool.name,
                    "--network", "none", "--graphics", "none",
                    "--osinfo", "detect=on,require=off", "--noautoconsole"],
                   check=True, timeout=180, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    inactive = sp.virsh("dumpxml", "--inactive", dom)
    assert re.search(r"<disk type='volume' device='disk'>\s*<driver name='qemu' type='qcow2'/>"
                     r"\s*<source pool='%s' volume='pc01.qcow2'/>\s*"
                     r"<target dev='vda' bus='virtio'/>\s*<transient/>" % r.pool.name,
                     inactive), inactive
    assert r.state(dom) == libvirt.VIR_DOMAIN_RUNNING
    assert layers(tier) == ["pc01.qcow2.TRANSIENT-" + dom]
