"""Guests on stormpool volumes: QEMU really opens the instances.

Firmware-only guests (SeaBIOS, machine 'pc', 64 MiB, TCG, no kernel) are
enough: QEMU opens the whole backing chain when the domain starts, and the
guest's block layer is driven from outside with HMP's qemu-io. The suite
checks the chain libvirt reports, where guest writes land, that stormpool
refuses to delete/wipe/resize an instance a running guest holds (and that a
stock dir pool does not), 20 guests of one template at once, virt-install
on a stormpool volume, stateless (<transient/>) desktops and the reset of an
instance with vol-wipe. A real Debian guest (tools/build-guest-image) then
boots to its ready marker from an instance on a copy replica, and writes
into its instance only.

One scenario per test. Each makes its own pool (spt-*, the `lab`: a
template tmpl.qcow2 with known data and its instances pc01-pc04, replica
policy 'none' so that they back directly onto the template) and its own
guests, removed at its end, passed or failed; a failed test prints the
tails of its guests' QEMU logs and of the daemons' logs. The Debian guest
boots once per run of the module (a module-scoped fixture, its own pool)
for the two tests that look at it. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_guests.py -k transient
"""

import collections
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (listdir, make_template, qemu_img_info, refused, run, sha256,
                              virsh as sp_virsh)

MiB = 1024 * 1024
TEMPLATE = "tmpl.qcow2"
TEMPLATE_WRITES = [(0xab, 0, 4 * MiB), (0xcd, 32 * MiB, MiB)]
INSTANCES = ("pc01.qcow2", "pc02.qcow2", "pc03.qcow2", "pc04.qcow2")
STORM = 20
STORM_START_LIMIT = 240  # seconds for starting all 20 guests
IN_USE_CODE = libvirt.VIR_ERR_OPERATION_INVALID     # SP_ERROR_IN_USE
IN_USE = ("it is in use by a running guest or another QEMU process "
          "(its image is locked)")
# The guest's disk is the virtio-blk device with alias virtio-disk0; with
# -blockdev (libvirt >= 7.0) it has no drive name, so HMP's qemu-io needs
# -d and the QOM path of the device's block backend, the "virtio-backend"
# child of the virtio-blk-pci proxy (HMP 'info block' prints it as
# "Attached to: /machine/peripheral/virtio-disk0/virtio-backend").
QEMU_IO_DEVICE = "virtio-disk0/virtio-backend"
TEST_TMP = os.path.join(sp.TOP, "_build", "test-tmp")


# ---- helpers --------------------------------------------------------------

def logdir():
    return os.path.join(sp.prefix(), "var", "log", "libvirt")


def qemu_log(dom):
    return os.path.join(logdir(), "qemu", dom + ".log")


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_since(path, offset):
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


def tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-lines:]
    except OSError as exc:
        return ["(cannot read %s: %s)" % (path, exc)]


def diagnose(doms):
    """What helps when a test fails: the guests' QEMU logs and the end of
    the daemons' logs."""
    for dom in doms:
        print("# --- tail of %s" % qemu_log(dom))
        for line in tail(qemu_log(dom)):
            print("#   " + line)
    for daemon in ("virtqemud", "virtstoraged"):
        path = os.path.join(logdir(), daemon + ".log")
        print("# --- tail of %s" % path)
        for line in tail(path, 10):
            print("#   " + line)


def run_timeout(argv, timeout, check=True):
    """run() with a time limit; a command that hangs is a failure."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not finish within %d s" % (" ".join(argv), timeout))
    if check and proc.returncode != 0:
        raise AssertionError("%s exited with %d\nstdout: %s\nstderr: %s" %
                             (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


def domain_xml(name, disk, virt_type="qemu"):
    """A firmware-only guest: SeaBIOS finds no bootable disk and waits, but
    QEMU has opened the disk's whole chain at start. ACPI gives it the PIIX4
    power management device, through which it can power itself off."""
    return """<domain type='%s'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
%s
    <serial type='pty'/>
    <memballoon model='none'/>
  </devices>
</domain>
""" % (virt_type, name, disk)


def volume_disk(pool, volume, cache="none", extra=""):
    return """    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='%s'/>
      <source pool='%s' volume='%s'/>
      <target dev='vda' bus='virtio'/>%s
    </disk>""" % (cache, pool, volume, extra)


def file_disk(path, cache="none", extra=""):
    return """    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='%s'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>%s
    </disk>""" % (cache, path, extra)


def domstate(name):
    return sp_virsh("domstate", name).strip()


def assert_running(name):
    st = domstate(name)
    assert st == "running", "%s is %r, not running" % (name, st)


def hmp(dom, command):
    return sp_virsh("qemu-monitor-command", dom, "--hmp", command)


def guest_qemu_io(dom, command, expect):
    """Run a qemu-io command on the guest's disk inside its QEMU. QEMU 7.2
    prints qemu-io's output on its stdout, which libvirt sends to the
    guest's log, not back to the monitor: read it there."""
    log = qemu_log(dom)
    offset = file_size(log)
    out = hmp(dom, 'qemu-io -d %s "%s"' % (QEMU_IO_DEVICE, command))
    assert "Error" not in out and "error" not in out, \
        "HMP qemu-io %r on %s: %s" % (command, dom, out)
    deadline = time.monotonic() + 10
    while True:
        new = log_since(log, offset)
        if "Pattern verification failed" in new:
            raise AssertionError("qemu-io %r in %s: %s" % (command, dom, new))
        if expect in new:
            return new
        if time.monotonic() > deadline:
            raise AssertionError("qemu-io %r in %s: %r not in the guest log; got %r"
                                 % (command, dom, expect, new))
        time.sleep(0.1)


def image_has_pattern(path, pattern, offset, length):
    """Whether @path (any qcow2, read with its backing chain) holds
    @pattern at [offset, offset+length)."""
    rc, out, err = run(["qemu-io", "-r", "-f", "qcow2", "-U", "-c",
                        "read -P 0x%02x %d %d" % (pattern, offset, length), path],
                       check=False)
    if rc != 0 and "Pattern verification failed" not in out + err:
        raise AssertionError("qemu-io cannot read %s: %s %s" % (path, out, err))
    return rc == 0 and "Pattern verification failed" not in out + err


def assert_pattern(path, pattern, offset, length):
    assert image_has_pattern(path, pattern, offset, length), \
        "pattern 0x%02x not at %d+%d in %s" % (pattern, offset, length, path)


def blkinfo(dom, disk):
    out = sp_virsh("domblkinfo", dom, disk)
    return {k.strip(): int(v) for k, v in
            (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def domstats_block(*doms):
    """{domain: {key: value}} from virsh domstats --block."""
    out = sp_virsh("domstats", "--block", *doms)
    stats, current = {}, None
    for line in out.splitlines():
        m = re.match(r"Domain: '(.*)'", line)
        if m:
            current = stats.setdefault(m.group(1), {})
        elif "=" in line and current is not None:
            key, value = line.strip().split("=", 1)
            current[key] = value
    return stats


def disk_xml(dom, inactive=False):
    xml = sp_virsh("dumpxml", *(["--inactive"] if inactive else []), dom)
    m = re.search(r"<disk .*?</disk>", xml, re.S)
    assert m, xml
    return m.group(0)


def qemu_pid(dom):
    with open(os.path.join(sp.prefix(), "var", "run", "libvirt", "qemu", dom + ".pid")) as f:
        return int(f.read().strip())


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def domain_names():
    return sp_virsh("list", "--all", "--name").split()


def pool_names():
    return sp_virsh("pool-list", "--all", "--name").split()


def remove_pool(name):
    run(["virsh", "-q", "pool-destroy", name], check=False)
    run(["virsh", "-q", "pool-undefine", name], check=False)


def short(request, length=30):
    """The test's name, fit for domain and pool names."""
    return re.sub(r"[^A-Za-z0-9]+", "-",
                  request.node.name.replace("test_", "", 1))[:length].strip("-")


# ---- fixtures ---------------------------------------------------------------

class Lab:
    """A stormpool pool (policy 'none') with the template tmpl.qcow2 (0xab
    at 0+4M, 0xcd at 32M+1M) and its instances pc01-pc04."""

    def __init__(self, pool, template, template_sha):
        self.pool = pool
        self.name = pool.name
        self.primary = pool.primary
        self.secondary = pool.secondary
        self.template = template
        self.template_sha = template_sha

    def instance(self, name):
        return self.pool.path(name)

    def vol(self, name):
        return self.pool.vol(name)


@pytest.fixture
def lab(pool):
    """The Lab of the test; the template's bytes never change (checked at
    the end of the test, unless the test deleted it)."""
    # Instances back directly onto the template here, the chain issue 3
    # describes; test_replicas.py covers the replica policies.
    p = pool(replica="policy='none'")
    template = make_template(p.template_path(TEMPLATE), 64 * MiB, TEMPLATE_WRITES)
    lab = Lab(p, template, sha256(template))
    p.refresh()
    # through the API (what vol-create-as --backing-vol does): no virsh
    # process per volume, as every test makes its lab
    for name in INSTANCES:
        p.create_volume(name, 64 * MiB, backing_vol=TEMPLATE)
    yield lab
    if os.path.exists(template):
        assert sha256(template) == lab.template_sha, "the template changed"


class Domains:
    """The guests of a test, named spt-g-<test>-<suffix>."""

    def __init__(self, request, conn):
        self.request = request
        self.conn = conn
        self.made = []

    def adopt(self, suffix):
        """The name for a guest that something else defines (virt-install);
        removed at the end of the test like the others."""
        name = "spt-g-%s-%s" % (short(self.request), suffix)
        sp.remove_domain(name)      # left by an interrupted earlier run
        self.made.append(name)
        return name

    def define(self, suffix, disk, virt_type="qemu"):
        name = self.adopt(suffix)
        self.conn.defineXML(domain_xml(name, disk, virt_type))
        return name


@pytest.fixture
def domains(request, conn):
    """Domains(...).define(suffix, disk) -> name: the test's guests, destroyed
    and undefined at its end (list it after `lab`: the guests go before
    their pool). When the test failed, the tails of the first three guests'
    QEMU logs and of the daemons' logs are printed."""
    failed_before = request.session.testsfailed
    d = Domains(request, conn)
    yield d
    if request.session.testsfailed > failed_before:
        diagnose(d.made[:3])
    for name in reversed(d.made):
        sp.remove_domain(name)
    left = set(d.made) & set(domain_names())
    assert not left, "domains left: %s" % sorted(left)


Desktop = collections.namedtuple("Desktop", "lab dom pc01 before_write")


@pytest.fixture
def desktop(lab, domains, virsh):
    """A running guest whose disk is a <disk type='volume'> on pc01.qcow2,
    cache='none'."""
    dom = domains.define("pc01", volume_disk(lab.name, "pc01.qcow2"))
    virsh("start", dom)
    assert_running(dom)
    return Desktop(lab, dom, lab.instance("pc01.qcow2"), None)


@pytest.fixture
def written(desktop):
    """The desktop's guest wrote 0x5a at 0+64k through its block layer, and
    flushed; before_write is the instance's sha256 before."""
    before = sha256(desktop.pc01)
    guest_qemu_io(desktop.dom, "write -P 0x5a 0 64k", "wrote 65536/65536 bytes at offset 0")
    guest_qemu_io(desktop.dom, "flush", "")
    return desktop._replace(before_write=before)


Transient = collections.namedtuple("Transient", "lab dom pc03 overlay pc03_sha")


# Stateless desktops on a file disk: the stormpool instance given by its path
# (virsh vol-path), as stock libvirt needs it (it accepts <transient/> only
# on disks whose type is 'file'; volume disks, which libvirt patch 0009
# accepts, are in test_stateless.py).
# cache='none' is accepted. At start libvirt creates the throw-away overlay
# with blockdev-create next to the disk's file: INSTANCE.TRANSIENT-DOMAIN,
# i.e. in the secondary tier, backing onto the instance (which QEMU then
# opens read-only); qemuProcessStop deletes it whenever QEMU ends.

@pytest.fixture
def transient(lab, domains, virsh):
    """A running stateless desktop: <transient/> with cache='none' on the
    path of pc03.qcow2 (a file disk)."""
    pc03 = lab.instance("pc03.qcow2")
    pc03_sha = sha256(pc03)
    dom = domains.define("transient", file_disk(pc03, extra="\n      <transient/>"))
    virsh("start", dom)
    assert_running(dom)
    return Transient(lab, dom, pc03, pc03 + ".TRANSIENT-" + dom, pc03_sha)


# ---- the lab -----------------------------------------------------------------

def test_instances_back_onto_the_template(lab):
    """The daemons answer; the pool made qcow2 instances (volumes created
    with the template as backing volume) in the secondary tier backing
    directly onto the real template, and lists them with it."""
    assert sp.daemon_alive(), "the private daemons do not answer: tools/virt-env start"
    for name in INSTANCES:
        info = qemu_img_info(lab.instance(name))
        assert info["backing-filename"] == lab.template, info
        assert info["backing-filename-format"] == "qcow2", info
    assert lab.pool.vol_names() == sorted(INSTANCES + (TEMPLATE,)), lab.pool.vol_names()
    assert_pattern(lab.instance("pc01.qcow2"), 0xab, 0, 4 * MiB)


# ---- a guest on an instance ----------------------------------------------------

def test_volume_disk_with_cache_none_defines_and_starts(lab, domains, virsh):
    """A domain with <disk type='volume'> on a stormpool instance,
    cache='none', defines and starts; QEMU opened the overlay with
    O_DIRECT."""
    dom = domains.define("pc01", volume_disk(lab.name, "pc01.qcow2"))
    inactive = disk_xml(dom, inactive=True)
    assert "<source pool='%s' volume='pc01.qcow2'/>" % lab.name in inactive, inactive
    virsh("start", dom)
    assert_running(dom)
    # whether it says writeback or writethrough depends on how far
    # SeaBIOS's virtio driver got
    block = hmp(dom, "info block")
    assert re.search(r"Cache mode:\s+write(back|through), direct", block), block


def test_running_disk_is_the_instance_backing_onto_the_template(desktop, conn, virsh):
    """domblklist, domblkinfo, domstats, dumpxml and HMP 'info block': the
    running disk is the instance in the secondary tier, backing onto the
    template in the primary tier."""
    lab, dom, pc01 = desktop.lab, desktop.dom, desktop.pc01
    # a volume disk: domblklist prints its source/@volume, the volume's name,
    # not a path (--details says 'volume'); the path is checked below with
    # domstats, domblkinfo by path, dumpxml's chain and HMP 'info block'
    assert virsh("domblklist", dom).split() == ["vda", "pc01.qcow2"], \
        virsh("domblklist", dom)
    assert virsh("domblklist", "--details", dom).split() == \
        ["volume", "disk", "vda", "pc01.qcow2"], virsh("domblklist", "--details", dom)
    # the running disk's path is the instance: domblkinfo finds the disk by it
    info = blkinfo(dom, "vda")
    assert info["Capacity"] == 64 * MiB, info
    assert info["Physical"] == os.path.getsize(pc01), (info, os.path.getsize(pc01))
    assert blkinfo(dom, pc01)["Capacity"] == 64 * MiB
    # ... and not by the template's path
    with refused(libvirt.VIR_ERR_INVALID_ARG,
                 "invalid path %s not assigned to domain" % lab.template):
        conn.lookupByName(dom).blockInfo(lab.template)
    stats = domstats_block(dom)[dom]
    assert stats["block.0.name"] == "vda" and stats["block.0.path"] == pc01, stats
    assert os.path.dirname(stats["block.0.path"]) == lab.secondary
    # the live XML: the volume, then a backing chain that ends at the template;
    # the pool gave the template as an explicit backing store that libvirt's
    # DAC driver leaves alone (it would hand it to QEMU's user for good)
    xml = disk_xml(dom)
    assert re.search(r"<source pool='%s' volume='pc01.qcow2' index='\d+'/>" % lab.name,
                     xml), xml
    chain = re.search(r"<backingStore type='file' index='\d+'>\s*"
                      r"<format type='qcow2'/>\s*"
                      r"<source file='([^']+)'>\s*"
                      r"<seclabel model='dac' relabel='no'/>\s*</source>\s*"
                      r"<backingStore/>\s*</backingStore>", xml)
    assert chain, xml
    assert chain.group(1) == lab.template, xml
    assert os.path.dirname(lab.template) == lab.primary
    block = hmp(dom, "info block")
    assert "%s (qcow2)" % pc01 in block, block
    assert re.search(r"Backing file:\s+%s \(chain depth: 1\)" % re.escape(lab.template),
                     block), block
    assert "/machine/peripheral/%s" % QEMU_IO_DEVICE in block, block


def test_guest_writes_go_through_its_block_layer(desktop):
    """The running guest's writes (HMP qemu-io -d virtio-disk0/virtio-backend)
    go through its block layer: it reads them back, and still sees the
    template's data behind them; the template does not change."""
    dom = desktop.dom
    guest_qemu_io(dom, "write -P 0x5a 0 64k", "wrote 65536/65536 bytes at offset 0")
    guest_qemu_io(dom, "read -P 0x5a 0 64k", "read 65536/65536 bytes at offset 0")
    guest_qemu_io(dom, "read -P 0xab 64k 4032k", "read 4128768/4128768 bytes at offset 65536")
    guest_qemu_io(dom, "flush", "")
    assert sha256(desktop.lab.template) == desktop.lab.template_sha


def test_instance_of_a_running_guest_is_protected(written):
    """With the guest running, vol-delete, vol-wipe and vol-resize of its
    instance are refused, vol-delete of the template too; nothing is pulled
    from under the guest."""
    lab, dom, pc01 = written.lab, written.dom, written.pc01
    assert_running(dom)
    with refused(IN_USE_CODE, "cannot delete 'pc01.qcow2': " + IN_USE):
        lab.vol("pc01.qcow2").delete(0)
    with refused(IN_USE_CODE, "cannot wipe 'pc01.qcow2': " + IN_USE):
        lab.vol("pc01.qcow2").wipe(0)
    with refused(IN_USE_CODE, "cannot resize 'pc01.qcow2': " + IN_USE):
        lab.vol("pc01.qcow2").resize(128 * MiB, 0)
    with refused(IN_USE_CODE, "cannot delete template '%s'" % TEMPLATE):
        lab.vol(TEMPLATE).delete(0)
    assert os.path.exists(pc01) and os.path.exists(lab.template)
    assert qemu_img_info(pc01)["virtual-size"] == 64 * MiB
    assert "pc01.qcow2" in lab.pool.vol_names()
    assert_running(dom)
    # the guest still reads its own data
    guest_qemu_io(dom, "read -P 0x5a 0 64k", "read 65536/65536 bytes at offset 0")


def test_guest_writes_land_in_the_instance_not_the_template(written, virsh):
    """After virsh destroy the guest's pattern is in the instance overlay
    itself (read without its backing file), not in the template."""
    lab, dom, pc01 = written.lab, written.dom, written.pc01
    virsh("destroy", dom)
    assert domstate(dom) == "shut off", domstate(dom)
    assert sha256(pc01) != written.before_write, "the overlay did not change"
    out = run(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 0 64k", pc01])[1]
    assert "read 65536/65536 bytes at offset 0" in out, out
    # the overlay itself holds the cluster: read without its backing file
    out = run(["qemu-io", "-r", "-c", "read -P 0x5a 0 64k",
               "json:{\"driver\":\"qcow2\",\"backing\":null,"
               "\"file\":{\"driver\":\"file\",\"filename\":\"%s\"}}" % pc01])[1]
    assert "Pattern verification failed" not in out, out
    assert_pattern(pc01, 0xab, 64 * 1024, 4 * MiB - 64 * 1024)
    assert sha256(lab.template) == lab.template_sha, "the template changed"
    assert_pattern(lab.template, 0xab, 0, 4 * MiB)
    run(["qemu-img", "check", "-q", pc01])


def test_vol_wipe_after_destroy_resets_the_instance(written, virsh):
    """Once the guest is destroyed, vol-wipe works and resets its instance
    to the pristine template, and the guest starts again on it."""
    lab, dom, pc01 = written.lab, written.dom, written.pc01
    virsh("destroy", dom)
    assert image_has_pattern(pc01, 0x5a, 0, 65536), "the guest's write is not in %s" % pc01
    virsh("vol-wipe", "--pool", lab.name, "pc01.qcow2")
    assert not image_has_pattern(pc01, 0x5a, 0, 65536), "the guest's write survived"
    assert_pattern(pc01, 0xab, 0, 4 * MiB)
    assert_pattern(pc01, 0xcd, 32 * MiB, MiB)
    info = qemu_img_info(pc01)
    assert info["backing-filename"] == lab.template and info["virtual-size"] == 64 * MiB, info
    assert sha256(lab.template) == lab.template_sha, "the template changed"
    # the reset instance starts again
    virsh("start", dom)
    assert_running(dom)
    guest_qemu_io(dom, "read -P 0xab 0 4M", "read 4194304/4194304 bytes at offset 0")
    virsh("destroy", dom)


# ---- contrast: a stock dir pool ----------------------------------------------------

@pytest.fixture
def dir_pool(request, workdir, prefix):
    """(name, target) of a stock dir pool the test defines itself; gone at
    its end."""
    name = "spt-g-%s-dir" % short(request)
    remove_pool(name)
    yield name, os.path.join(workdir, "dirpool")
    remove_pool(name)
    assert name not in pool_names(), "%s left" % name


def test_dir_pool_deletes_an_overlay_a_running_guest_uses(dir_pool, domains, virsh):
    """Contrast: a stock dir pool deletes an overlay a running guest uses
    without a word (the data loss stormpool's in-use check prevents)."""
    name, target = dir_pool
    virsh("pool-define-as", name, "dir", "--target", target)
    virsh("pool-build", name)
    # a dir pool queues no background work: nothing to wait for
    virsh("pool-start", name, wait=False)
    base = os.path.join(target, "base.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"])
    virsh("pool-refresh", name, wait=False)
    virsh("vol-create-as", name, "overlay.qcow2", "64M", "--format", "qcow2",
          "--backing-vol", base, "--backing-vol-format", "qcow2")
    dom = domains.define("dirpool", volume_disk(name, "overlay.qcow2"))
    virsh("start", dom)
    assert_running(dom)
    rc, out, err = run(["virsh", "-q", "vol-delete", "--pool", name, "overlay.qcow2"],
                       check=False)
    assert rc == 0, "the dir pool refused: %s" % err
    assert not os.path.exists(os.path.join(target, "overlay.qcow2"))
    assert_running(dom)
    virsh("destroy", dom)
    virsh("undefine", dom)
    virsh("pool-destroy", name)
    virsh("pool-undefine", name)


# ---- stateless desktops (<transient/>) ------------------------------------------

def test_transient_layer_is_next_to_the_instance(transient, virsh):
    """<transient/> with cache='none' on the instance's path (vol-path)
    starts; the throw-away layer is INSTANCE.TRANSIENT-DOMAIN in the
    secondary tier, backing onto the instance, and the guest's disk."""
    lab, dom, pc03, overlay = transient.lab, transient.dom, transient.pc03, transient.overlay
    assert virsh("vol-path", "--pool", lab.name, "pc03.qcow2").strip() == pc03
    assert listdir(lab.secondary).count(os.path.basename(overlay)) == 1, \
        listdir(lab.secondary)
    info = qemu_img_info(overlay)
    assert info["format"] == "qcow2", info
    assert info["backing-filename"] == pc03, info
    xml = disk_xml(dom)
    assert re.search(r"<source file='%s' index='\d+'/>\s*"
                     r"<backingStore type='file' index='\d+'>\s*<format type='qcow2'/>\s*"
                     r"<source file='%s'/>\s*"
                     r"<backingStore type='file' index='\d+'>\s*<format type='qcow2'/>\s*"
                     r"<source file='%s'/>\s*<backingStore/>"
                     % (re.escape(overlay), re.escape(pc03), re.escape(lab.template)),
                     xml), xml
    assert "<transient/>" in xml, xml
    stats = domstats_block(dom)[dom]
    assert stats["block.0.path"] == overlay, stats


def test_refresh_lists_the_transient_layer_and_protects_it(transient, virsh):
    """pool-refresh while the transient guest runs lists the throw-away
    layer as a layer of the pool, backing onto the instance; it and its
    instance are protected."""
    lab, overlay = transient.lab, transient.overlay
    layer_name = os.path.basename(overlay)
    virsh("pool-refresh", lab.name)
    names = lab.pool.vol_names()
    assert layer_name in names, names
    assert "pc03.qcow2" in names, names
    info = virsh("vol-dumpxml", "--pool", lab.name, layer_name)
    assert "<path>%s</path>" % transient.pc03 in info, info
    with refused(IN_USE_CODE, "cannot delete '%s': %s" % (layer_name, IN_USE)):
        lab.vol(layer_name).delete(0)
    # the throw-away layer backs onto the instance (and QEMU holds it
    # read-only below the layer): the layer is named first
    layer = "1 layer(s) in '%s' back onto it: %s" % (os.path.dirname(overlay), layer_name)
    with refused(IN_USE_CODE, "cannot delete instance 'pc03.qcow2': " + layer):
        lab.vol("pc03.qcow2").delete(0)
    with refused(IN_USE_CODE, "cannot wipe instance 'pc03.qcow2': " + layer):
        lab.vol("pc03.qcow2").wipe(0)


def test_transient_writes_are_thrown_away_at_destroy(transient, virsh):
    """The transient guest's writes go to the throw-away layer; after
    destroy the layer is gone and the instance is byte for byte what it
    was."""
    lab, dom, pc03, overlay = transient.lab, transient.dom, transient.pc03, transient.overlay
    before = sha256(overlay)
    guest_qemu_io(dom, "write -P 0x5a 0 64k", "wrote 65536/65536 bytes at offset 0")
    guest_qemu_io(dom, "read -P 0x5a 0 64k", "read 65536/65536 bytes at offset 0")
    guest_qemu_io(dom, "flush", "")
    assert sha256(overlay) != before, "the write did not reach the throw-away layer"
    assert sha256(pc03) == transient.pc03_sha, "the write reached the instance"
    virsh("destroy", dom)
    assert not os.path.exists(overlay), "%s left behind" % overlay
    assert sha256(pc03) == transient.pc03_sha, "the instance changed"
    assert not image_has_pattern(pc03, 0x5a, 0, 65536), "the guest's write is in the instance"
    assert_pattern(pc03, 0xab, 0, 4 * MiB)
    assert listdir(lab.secondary) == list(INSTANCES), listdir(lab.secondary)
    assert sha256(lab.template) == lab.template_sha


def test_transient_layer_removed_after_guest_power_off(transient, children, virsh):
    """The same after a guest-initiated power-off (ACPI S5): QEMU reports a
    guest shutdown, the layer is removed, the instance is unchanged."""
    dom, pc03, overlay = transient.dom, transient.pc03, transient.overlay
    assert os.path.exists(overlay), listdir(transient.lab.secondary)
    guest_qemu_io(dom, "write -P 0x66 1M 64k", "wrote 65536/65536 bytes at offset 1048576")
    # SeaBIOS maps the PIIX4 PM registers at 0x600 during POST (an unmapped
    # port reads 0xff); a write of SLP_EN with SLP_TYP 0 (S5) to PM1a_CNT
    # (0x604) is exactly how an OS powers the machine off. HMP 'o' performs
    # it in the guest's I/O space, so QEMU reports a guest shutdown.
    deadline = time.monotonic() + 20
    while "= 0x00" not in hmp(dom, "i /b 0x604"):
        assert time.monotonic() < deadline, "SeaBIOS did not enable the ACPI PM registers"
        time.sleep(0.2)
    events = children.start("event", "--domain", dom, "--event", "lifecycle", "--loop",
                            "--timeout", "30")
    try:
        time.sleep(1)  # let virsh register for the events
        hmp(dom, "o /w 0x604 0x2000")
        deadline = time.monotonic() + 30
        while domstate(dom) != "shut off":
            assert time.monotonic() < deadline, "still %s" % domstate(dom)
            time.sleep(0.2)
    finally:
        time.sleep(0.5)
        events.terminate()
        seen = "".join(events.communicate())
    assert "Shutdown Finished after guest request" in seen, seen
    assert virsh("domstate", "--reason", dom).strip() == "shut off (shutdown)"
    assert not os.path.exists(overlay), "%s left behind" % overlay
    assert sha256(pc03) == transient.pc03_sha, "the instance changed"
    assert not image_has_pattern(pc03, 0x66, MiB, 65536), "the guest's write is in the instance"
    virsh("undefine", dom)


# ---- many guests -------------------------------------------------------------------

@pytest.mark.time_limit(STORM_START_LIMIT + 360)
def test_twenty_guests_of_one_template_run_at_once(lab, domains, virsh):
    """20 guests, each on its own instance with cache='none', start in
    parallel and run at once, each on its own instance; the instances and
    the template are protected; all 20 destroy and undefine."""
    vols = ["st%02d.qcow2" % i for i in range(1, STORM + 1)]
    for vol in vols:
        virsh("vol-create-as", lab.name, vol, "64M", "--format", "qcow2",
              "--backing-vol", TEMPLATE, "--backing-vol-format", "qcow2")
    storm = [domains.define(vol[:-len(".qcow2")], volume_disk(lab.name, vol)) for vol in vols]

    def start(dom):
        return run_timeout(["virsh", "-q", "start", dom], STORM_START_LIMIT, check=False)

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=STORM) as ex:
        results = list(ex.map(start, storm))
    elapsed = time.monotonic() - began
    print("# starting the 20 guests (in parallel) took %.1f s" % elapsed)
    failed = [(dom, r[2].strip()) for dom, r in zip(storm, results) if r[0] != 0]
    assert not failed, "virsh start failed: %s" % failed
    assert elapsed < STORM_START_LIMIT, "starting 20 guests took %.1f s" % elapsed

    running = set(virsh("list", "--state-running", "--name").split())
    assert set(storm) <= running, sorted(set(storm) - running)
    for dom, vol in zip(storm, vols):
        assert virsh("domblklist", dom).split() == ["vda", vol], virsh("domblklist", dom)
    stats = domstats_block(*storm)
    paths = [stats[dom]["block.0.path"] for dom in storm]
    assert paths == [lab.instance(vol) for vol in vols], paths
    assert len(set(paths)) == 20

    pids = [qemu_pid(dom) for dom in storm]
    rss = sum(proc_status_kib(pid, "VmRSS") for pid in pids)
    hwm = sum(proc_status_kib(pid, "VmHWM") for pid in pids)
    print("# 20 QEMU processes: RSS sum %.0f MiB now, peak RSS (VmHWM) sum %.0f MiB"
          % (rss / 1024, hwm / 1024))

    with refused(IN_USE_CODE, "cannot delete 'st07.qcow2': " + IN_USE):
        lab.vol("st07.qcow2").delete(0)
    with refused(IN_USE_CODE, "cannot delete template '%s': 24 instance(s)" % TEMPLATE):
        lab.vol(TEMPLATE).delete(0)
    for dom in storm:
        assert_running(dom)

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=STORM) as ex:
        results = list(ex.map(lambda dom: run_timeout(["virsh", "-q", "destroy", dom],
                                                      120, check=False), storm))
    print("# destroying the 20 (in parallel) took %.1f s" % (time.monotonic() - began))
    failed = [(dom, r[2].strip()) for dom, r in zip(storm, results) if r[0] != 0]
    assert not failed, "virsh destroy failed: %s" % failed
    for dom in storm:
        virsh("undefine", dom)
    assert not set(storm) & set(domain_names()), domain_names()
    for vol in vols:
        virsh("vol-delete", "--pool", lab.name, vol)
    assert sha256(lab.template) == lab.template_sha


# ---- KVM -----------------------------------------------------------------------------

def kvm_unusable(directory):
    """Why /dev/kvm cannot be used here, or None. Bounded probes: libvirt's
    view, QEMU's (QMP query-kvm), and whether SeaBIOS actually runs under
    KVM (reaches "No bootable device" on its debug port within 20 s)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no usable /dev/kvm"
    rc, _, err = run(["timeout", "20", "virsh", "-q", "domcapabilities",
                      "--virttype", "kvm"], check=False)
    if rc != 0:
        return "libvirt has no kvm domain type: %s" % err.strip()[:200]
    rc, out, err = run(["timeout", "20", "qemu-system-x86_64", "-accel", "kvm",
                        "-machine", "pc", "-nodefaults", "-display", "none", "-S",
                        "-qmp", "stdio"], check=False,
                       input='{"execute":"qmp_capabilities"}\n'
                             '{"execute":"query-kvm"}\n{"execute":"quit"}\n')
    if rc != 0 or '"enabled": true' not in out:
        return "QEMU cannot enable KVM (rc %d): %s" % (rc, (err or out).strip()[:200])
    debug = os.path.join(directory, "kvm-probe.debugcon")
    began = time.monotonic()
    proc = subprocess.Popen(["qemu-system-x86_64", "-accel", "kvm", "-machine", "pc",
                             "-m", "64", "-nodefaults", "-display", "none",
                             "-chardev", "file,id=dbg,path=" + debug,
                             "-device", "isa-debugcon,iobase=0x402,chardev=dbg"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - began < 20:
            if "No bootable device" in log_since(debug, 0):
                print("# KVM probe: SeaBIOS reached its boot menu end in %.1f s"
                      % (time.monotonic() - began))
                return None
            if proc.poll() is not None:
                return "QEMU with -accel kvm exited with %d" % proc.returncode
            time.sleep(0.1)
        return "SeaBIOS did not get through POST within 20 s under KVM (too slow)"
    finally:
        proc.kill()
        proc.wait()


def test_kvm_domain_on_an_instance_starts(lab, domains, workdir, virsh):
    """KVM variant: a <domain type='kvm'> on a stormpool instance starts
    and holds its instance (skipped only where /dev/kvm is unusable; a
    broken probe is a failure, not a skip)."""
    try:
        reason = kvm_unusable(workdir)
    except Exception as exc:
        pytest.fail("the KVM probe failed: %r" % exc)
    if reason:
        pytest.skip(reason)
    dom = domains.define("kvm", volume_disk(lab.name, "pc04.qcow2"), virt_type="kvm")
    run_timeout(["virsh", "-q", "start", dom], 120)
    assert_running(dom)
    assert "kvm support: enabled" in hmp(dom, "info kvm")
    assert virsh("domblklist", dom).split() == ["vda", "pc04.qcow2"]
    assert domstats_block(dom)[dom]["block.0.path"] == lab.instance("pc04.qcow2")
    with refused(IN_USE_CODE, "cannot delete 'pc04.qcow2': " + IN_USE):
        lab.vol("pc04.qcow2").delete(0)
    virsh("destroy", dom)
    virsh("undefine", dom)


# ---- virt-install ---------------------------------------------------------------------

def test_virt_install_import_on_an_instance(lab, domains, virsh):
    """virt-install --import --disk vol=POOL/pc02.qcow2 creates and starts a
    guest on the instance (a file disk on its path), makes no pool, and the
    running guest's instance cannot be wiped."""
    dom = domains.adopt("vi")
    pools_before = sorted(pool_names())
    run_timeout(["virt-install", "--connect", "qemu:///system", "--name", dom,
                 "--virt-type", "qemu", "--memory", "64", "--vcpus", "1", "--import",
                 "--disk", "vol=%s/pc02.qcow2,bus=virtio,cache=none" % lab.name,
                 "--network", "none", "--graphics", "none",
                 "--osinfo", "detect=on,require=off", "--noautoconsole"], 180)
    assert_running(dom)
    # virt-install resolves vol= to the volume's path: a file disk on the instance
    xml = disk_xml(dom)
    pc02 = lab.instance("pc02.qcow2")
    assert re.search(r"<disk type='file' device='disk'>\s*"
                     r"<driver name='qemu' type='qcow2' cache='none'/>\s*"
                     r"<source file='%s' index='\d+'/>\s*"
                     r"<backingStore type='file' index='\d+'>\s*<format type='qcow2'/>\s*"
                     r"<source file='%s'/>" % (re.escape(pc02), re.escape(lab.template)),
                     xml), xml
    assert "<domain type='qemu'" in virsh("dumpxml", dom)
    assert virsh("domblklist", dom).split() == ["vda", pc02]
    # no dir pool was made behind our back
    assert sorted(pool_names()) == pools_before
    with refused(IN_USE_CODE, "cannot wipe 'pc02.qcow2': " + IN_USE):
        lab.vol("pc02.qcow2").wipe(0)
    virsh("destroy", dom)
    virsh("undefine", dom)


# ---- the end of a lab -------------------------------------------------------------------

def test_lab_volumes_and_pool_go_without_a_trace(lab, virsh):
    """With no guest left, the instances and the template delete, both
    tiers are empty, the pool destroys and undefines; the template never
    changed and the daemon answers."""
    assert sha256(lab.template) == lab.template_sha
    for name in INSTANCES:
        virsh("vol-delete", "--pool", lab.name, name)
    virsh("vol-delete", "--pool", lab.name, TEMPLATE)
    assert listdir(lab.primary) == [] and listdir(lab.secondary) == [], \
        (listdir(lab.primary), listdir(lab.secondary))
    virsh("pool-destroy", lab.name)
    virsh("pool-undefine", lab.name)
    assert lab.name not in pool_names()
    assert sp.daemon_alive()


# ---- a real guest -------------------------------------------------------------------
# The Debian template of tools/build-guest-image (bootloader, kernel and
# initrd read from the template, systemd to multi-user.target) boots under
# TCG from a stormpool instance backed by a copy replica.

REAL_POOL = "spt-guests-debian"
REAL_DOM = "spt-guests-debian"
REAL_INSTANCE = "debian-pc01.qcow2"
REAL_BOOT_LIMIT = 900       # seconds; a TCG boot on 2 shared cores
BUILD_LIMIT = 1500          # seconds to build the guest image if not cached
GUEST_MARKER = "STORMPOOL-GUEST-READY boot=1"
LOGIN_PROMPT = "stormpool-guest login:"


def real_domain_xml(console):
    return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
%s
    <serial type='file'><source path='%s'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
""" % (REAL_DOM, volume_disk(REAL_POOL, REAL_INSTANCE), console)


def data_at_top(path):
    """Bytes of guest data the image @path holds itself (not its backing)."""
    rc, out, err = run(["qemu-img", "map", "-U", "--output=json", path])
    return sum(e["length"] for e in json.loads(out) if e.get("data") and e["depth"] == 0)


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


Debian = collections.namedtuple(
    "Debian", "template instance replica template_sha replica_sha instance_data console "
              "secondary")


@pytest.fixture(scope="module")
def debian(prefix):
    """Booted once for the module: the Debian template (built, or taken
    from the cache) in a copy-replica pool of its own, an instance of it,
    a guest on the instance booted to its ready marker and the login
    prompt that follows, then destroyed. What was measured before the boot
    and the console's text are handed to the tests; the guest, the pool
    and the directory go at the end of the module: undefine, vol-delete of
    the instance and the template, pool-destroy and pool-undefine must
    succeed."""
    os.makedirs(TEST_TMP, exist_ok=True)
    root = tempfile.mkdtemp(prefix="spt-guests-debian-", dir=TEST_TMP)
    primary = os.path.join(root, "hdd")
    secondary = os.path.join(root, "ssd")
    template = os.path.join(primary, "debian.qcow2")
    console = os.path.join(root, "console.log")
    sp.remove_domain(REAL_DOM)
    remove_pool(REAL_POOL)
    try:
        rc, out, err = run_timeout([os.path.join(sp.TOP, "tools", "build-guest-image")],
                                   BUILD_LIMIT)
        os.makedirs(primary)
        run(["cp", "--sparse=always", out.strip(), template])
        with sp.connection() as conn:
            sp.define_pool(conn, REAL_POOL, primary, secondary, replica="policy='copy'")
        sp_virsh("pool-build", REAL_POOL)
        sp_virsh("pool-start", REAL_POOL)
        sp_virsh("vol-create-as", REAL_POOL, REAL_INSTANCE, "2G", "--format", "qcow2",
                 "--backing-vol", "debian.qcow2", "--backing-vol-format", "qcow2")
        instance = os.path.join(secondary, REAL_INSTANCE)
        replica = qemu_img_info(instance)["backing-filename"]
        before = dict(template_sha=sha256(template), replica_sha=sha256(replica),
                      instance_data=data_at_top(instance))
        with sp.connection() as conn:
            conn.defineXML(real_domain_xml(console))
        start = time.monotonic()
        sp_virsh("start", REAL_DOM)
        text = ""
        try:
            while GUEST_MARKER not in text:
                assert time.monotonic() - start < REAL_BOOT_LIMIT, \
                    "no ready marker after %d s; console:\n%s" % (REAL_BOOT_LIMIT, text[-3000:])
                assert domstate(REAL_DOM) == "running", \
                    "the guest stopped; console:\n" + text[-3000:]
                time.sleep(1)
                text = read_text(console)
            print("# the Debian guest booted to its ready marker in %.1f s (TCG)"
                  % (time.monotonic() - start))
            # The login prompt follows the marker, a moment later on a loaded host.
            prompt_by = time.monotonic() + 60
            while LOGIN_PROMPT not in text and time.monotonic() < prompt_by:
                time.sleep(1)
                text = read_text(console)
        except BaseException:
            diagnose([REAL_DOM])
            run(["virsh", "-q", "destroy", REAL_DOM], check=False)
            raise
        sp_virsh("destroy", REAL_DOM)
        yield Debian(template, instance, replica, console=text, secondary=secondary, **before)
        # the guest, its instance, the template and the pool go, each checked
        sp_virsh("undefine", REAL_DOM)
        sp_virsh("vol-delete", "--pool", REAL_POOL, REAL_INSTANCE)
        sp_virsh("vol-delete", "--pool", REAL_POOL, "debian.qcow2")
        sp_virsh("pool-destroy", REAL_POOL)
        sp_virsh("pool-undefine", REAL_POOL)
    finally:
        sp.remove_domain(REAL_DOM)
        remove_pool(REAL_POOL)
        shutil.rmtree(root, ignore_errors=True)
    assert REAL_DOM not in domain_names(), "%s left" % REAL_DOM
    assert REAL_POOL not in pool_names(), "%s left" % REAL_POOL
    assert not os.path.exists(root), "%s left" % root


def test_real_guest_boots_from_an_instance_on_a_copy_replica(debian):
    """A real Debian guest boots (TCG) from a stormpool instance backing
    onto a copy replica in the secondary tier, to its ready marker and then
    its login prompt on the serial console."""
    assert debian.replica.startswith(debian.secondary + "/.stormpool-replicas/"), \
        debian.replica
    assert GUEST_MARKER in debian.console, debian.console[-3000:]
    assert LOGIN_PROMPT in debian.console, debian.console[-3000:]


def test_real_guest_writes_into_its_instance_only(debian):
    """The booted guest wrote into its instance only: template and replica
    are unchanged (sha256), the instance holds more guest data than before
    the boot and is a consistent qcow2. (The fixture's end deletes the
    instance, the template and the pool, each checked.)"""
    assert sha256(debian.template) == debian.template_sha
    assert sha256(debian.replica) == debian.replica_sha
    written = data_at_top(debian.instance)
    assert written > debian.instance_data, (written, debian.instance_data)
    run(["qemu-img", "check", "-q", debian.instance])
