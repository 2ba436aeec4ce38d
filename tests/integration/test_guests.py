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

Every name this suite creates starts with "spg-"; every domain is destroyed
and undefined, the pools removed and the directories deleted even when a
step fails.
"""

import concurrent.futures
import json
import os
import re
import subprocess
import time

from taplib import (PREFIX, Suite, daemon_alive, define_pool, listdir, make_tmpdir, qemu_img_info,
                    run, sha256, virsh, virsh_fails, vol_names, TOP)

POOL = "spg-guests"
DIRPOOL = "spg-guests-dir"
DOM = "spg-guests-pc01"
DOM_TRANSIENT = "spg-guests-transient"
DOM_TRANSIENT_VOL = "spg-guests-transient-vol"
DOM_KVM = "spg-guests-kvm"
DOM_DIRPOOL = "spg-guests-dirpool"
DOM_VI = "spg-vi"
STORM = ["spg-guests-st%02d" % i for i in range(1, 21)]
STORM_VOLS = ["st%02d.qcow2" % i for i in range(1, 21)]
STORM_START_LIMIT = 240  # seconds for starting all 20 guests
IN_USE = "it is in use by a running guest or another QEMU process"
# The guest's disk is the virtio-blk device with alias virtio-disk0; with
# -blockdev (libvirt >= 7.0) it has no drive name, so HMP's qemu-io needs
# -d and the QOM path of the device's block backend, the "virtio-backend"
# child of the virtio-blk-pci proxy (HMP 'info block' prints it as
# "Attached to: /machine/peripheral/virtio-disk0/virtio-backend").
QEMU_IO_DEVICE = "virtio-disk0/virtio-backend"
LOGDIR = os.path.join(PREFIX, "var", "log", "libvirt")
QEMU_RUNDIR = os.path.join(PREFIX, "var", "run", "libvirt", "qemu")
MiB = 1024 * 1024

suite = Suite("guests")
root = make_tmpdir("spg-guests-")
suite.cleanup_dir(root)
primary = os.path.join(root, "hdd", "templates")
secondary = os.path.join(root, "ssd", "lab")
dirpool = os.path.join(root, "dirpool")
template = os.path.join(primary, "tmpl.qcow2")
state = {}


def instance(name):
    return os.path.join(secondary, name)


# ---- helpers --------------------------------------------------------------

def qemu_log(dom):
    return os.path.join(LOGDIR, "qemu", dom + ".log")


def log_size(path):
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
    """TAP comments that help when a step fails: the guests' QEMU logs and
    the end of the daemons' logs."""
    for dom in doms:
        print("# --- tail of %s" % qemu_log(dom))
        for line in tail(qemu_log(dom)):
            print("#   " + line)
    for daemon in ("virtqemud", "virtstoraged"):
        path = os.path.join(LOGDIR, daemon + ".log")
        print("# --- tail of %s" % path)
        for line in tail(path, 10):
            print("#   " + line)


def step(description, doms=()):
    """suite.step, printing diagnostics for @doms when the step fails."""
    def wrap(func):
        def checked():
            try:
                func()
            except Exception:
                diagnose(doms)
                raise
        suite.step(description)(checked)
        return func
    return wrap


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


def undefine_domain(name):
    run(["virsh", "-q", "destroy", name], check=False)
    run(["virsh", "-q", "undefine", name], check=False)


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


def define(name, disk, virt_type="qemu"):
    """Define a domain; its cleanup is registered before it exists."""
    suite.cleanup(undefine_domain, name)
    path = os.path.join(root, name + ".xml")
    with open(path, "w") as f:
        f.write(domain_xml(name, disk, virt_type))
    virsh("define", path)


def domstate(name):
    return virsh("domstate", name).strip()


def assert_running(name):
    st = domstate(name)
    assert st == "running", "%s is %r, not running" % (name, st)


def hmp(dom, command):
    return virsh("qemu-monitor-command", dom, "--hmp", command)


def guest_qemu_io(dom, command, expect):
    """Run a qemu-io command on the guest's disk inside its QEMU. QEMU 7.2
    prints qemu-io's output on its stdout, which libvirt sends to the
    guest's log, not back to the monitor: read it there."""
    log = qemu_log(dom)
    offset = log_size(log)
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
    out = virsh("domblkinfo", dom, disk)
    return {k.strip(): int(v) for k, v in
            (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def domstats_block(*doms):
    """{domain: {key: value}} from virsh domstats --block."""
    out = virsh("domstats", "--block", *doms)
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
    xml = virsh("dumpxml", *(["--inactive"] if inactive else []), dom)
    m = re.search(r"<disk .*?</disk>", xml, re.S)
    assert m, xml
    return m.group(0)


def qemu_pid(dom):
    with open(os.path.join(QEMU_RUNDIR, dom + ".pid")) as f:
        return int(f.read().strip())


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def domain_names():
    return virsh("list", "--all", "--name").split()


# ---- the suite ------------------------------------------------------------

@step("setup: daemons answer; a stormpool pool, a real qcow2 template, instances")
def _():
    assert daemon_alive(), "the private daemons do not answer: tools/virt-env start"
    leftovers = [d for d in domain_names() if d.startswith(("spg-guests", DOM_VI))]
    assert not leftovers, "domains of an earlier run are still defined: %s" % leftovers
    suite.cleanup_pool(POOL)
    # Instances back directly onto the template here, the chain issue 3
    # describes; test_replicas.py covers the replica policies.
    define_pool(POOL, primary, secondary, replica="policy='none'")
    virsh("pool-build", POOL)
    virsh("pool-start", POOL)
    run(["qemu-img", "create", "-q", "-f", "qcow2", template, "64M"])
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 4M", template])
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 32M 1M", template])
    state["template_sha"] = sha256(template)
    virsh("pool-refresh", POOL)
    for name in ("pc01.qcow2", "pc02.qcow2", "pc03.qcow2", "pc04.qcow2"):
        virsh("vol-create-as", POOL, name, "64M", "--format", "qcow2",
              "--backing-vol", "tmpl.qcow2", "--backing-vol-format", "qcow2")
        info = qemu_img_info(instance(name))
        assert info["backing-filename"] == template, info
        assert info["backing-filename-format"] == "qcow2", info
    assert vol_names(POOL) == ["pc01.qcow2", "pc02.qcow2", "pc03.qcow2",
                               "pc04.qcow2", "tmpl.qcow2"], vol_names(POOL)
    assert_pattern(instance("pc01.qcow2"), 0xab, 0, 4 * MiB)


@step("a domain with <disk type='volume'> on a stormpool instance, cache='none', "
      "defines and starts", doms=[DOM])
def _():
    define(DOM, volume_disk(POOL, "pc01.qcow2"))
    inactive = disk_xml(DOM, inactive=True)
    assert "<source pool='%s' volume='pc01.qcow2'/>" % POOL in inactive, inactive
    virsh("start", DOM)
    assert_running(DOM)
    # QEMU opened the overlay with O_DIRECT (cache='none'); whether it says
    # writeback or writethrough depends on how far SeaBIOS's virtio driver got
    block = hmp(DOM, "info block")
    assert re.search(r"Cache mode:\s+write(back|through), direct", block), block


@step("domblklist, domblkinfo, domstats, dumpxml: the instance in the secondary tier "
      "backing onto the template in the primary tier", doms=[DOM])
def _():
    pc01 = instance("pc01.qcow2")
    # a volume disk: domblklist prints its source/@volume, the volume's name,
    # not a path (--details says 'volume'); the path is checked below with
    # domstats, domblkinfo by path, dumpxml's chain and HMP 'info block'
    assert virsh("domblklist", DOM).split() == ["vda", "pc01.qcow2"], \
        virsh("domblklist", DOM)
    assert virsh("domblklist", "--details", DOM).split() == \
        ["volume", "disk", "vda", "pc01.qcow2"], virsh("domblklist", "--details", DOM)
    # the running disk's path is the instance: domblkinfo finds the disk by it
    info = blkinfo(DOM, "vda")
    assert info["Capacity"] == 64 * MiB, info
    assert info["Physical"] == os.path.getsize(pc01), (info, os.path.getsize(pc01))
    assert blkinfo(DOM, pc01)["Capacity"] == 64 * MiB
    virsh_fails("domblkinfo", DOM, template, expect="invalid path")
    stats = domstats_block(DOM)[DOM]
    assert stats["block.0.name"] == "vda" and stats["block.0.path"] == pc01, stats
    assert os.path.dirname(stats["block.0.path"]) == secondary
    # the live XML: the volume, then a backing chain that ends at the template;
    # the pool gave the template as an explicit backing store that libvirt's
    # DAC driver leaves alone (it would hand it to QEMU's user for good)
    xml = disk_xml(DOM)
    assert re.search(r"<source pool='%s' volume='pc01.qcow2' index='\d+'/>" % POOL, xml), xml
    chain = re.search(r"<backingStore type='file' index='\d+'>\s*"
                      r"<format type='qcow2'/>\s*"
                      r"<source file='([^']+)'>\s*"
                      r"<seclabel model='dac' relabel='no'/>\s*</source>\s*"
                      r"<backingStore/>\s*</backingStore>", xml)
    assert chain, xml
    assert chain.group(1) == template and os.path.dirname(template) == primary, xml
    block = hmp(DOM, "info block")
    assert "%s (qcow2)" % pc01 in block, block
    assert re.search(r"Backing file:\s+%s \(chain depth: 1\)" % re.escape(template), block), block
    assert "/machine/peripheral/%s" % QEMU_IO_DEVICE in block, block


@step("the running guest's writes (HMP qemu-io -d %s) go through its block layer"
      % QEMU_IO_DEVICE, doms=[DOM])
def _():
    state["pc01_before_write"] = sha256(instance("pc01.qcow2"))
    guest_qemu_io(DOM, "write -P 0x5a 0 64k", "wrote 65536/65536 bytes at offset 0")
    guest_qemu_io(DOM, "read -P 0x5a 0 64k", "read 65536/65536 bytes at offset 0")
    # the guest still sees the template's data behind its own write
    guest_qemu_io(DOM, "read -P 0xab 64k 4032k", "read 4128768/4128768 bytes at offset 65536")
    guest_qemu_io(DOM, "flush", "")
    assert sha256(template) == state["template_sha"]


@step("with the guest running, vol-delete, vol-wipe and vol-resize of its instance "
      "are refused, vol-delete of the template too", doms=[DOM])
def _():
    pc01 = instance("pc01.qcow2")
    assert_running(DOM)
    virsh_fails("vol-delete", "--pool", POOL, "pc01.qcow2",
                expect="cannot delete 'pc01.qcow2': " + IN_USE)
    virsh_fails("vol-wipe", "--pool", POOL, "pc01.qcow2",
                expect="cannot wipe 'pc01.qcow2': " + IN_USE)
    virsh_fails("vol-resize", "--pool", POOL, "pc01.qcow2", "128M",
                expect="cannot resize 'pc01.qcow2': " + IN_USE)
    virsh_fails("vol-delete", "--pool", POOL, "tmpl.qcow2",
                expect="cannot delete template 'tmpl.qcow2'")
    assert os.path.exists(pc01) and os.path.exists(template)
    assert qemu_img_info(pc01)["virtual-size"] == 64 * MiB
    assert "pc01.qcow2" in vol_names(POOL)
    assert_running(DOM)
    # the guest still reads its own data: nothing was pulled from under it
    guest_qemu_io(DOM, "read -P 0x5a 0 64k", "read 65536/65536 bytes at offset 0")


@step("virsh destroy; the pattern is in the instance overlay, not in the template",
      doms=[DOM])
def _():
    pc01 = instance("pc01.qcow2")
    virsh("destroy", DOM)
    assert domstate(DOM) == "shut off", domstate(DOM)
    assert sha256(pc01) != state["pc01_before_write"], "the overlay did not change"
    out = run(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x5a 0 64k", pc01])[1]
    assert "read 65536/65536 bytes at offset 0" in out, out
    # the overlay itself holds the cluster: read without its backing file
    out = run(["qemu-io", "-r", "-c", "read -P 0x5a 0 64k",
               "json:{\"driver\":\"qcow2\",\"backing\":null,"
               "\"file\":{\"driver\":\"file\",\"filename\":\"%s\"}}" % pc01])[1]
    assert "Pattern verification failed" not in out, out
    assert_pattern(pc01, 0xab, 64 * 1024, 4 * MiB - 64 * 1024)
    assert sha256(template) == state["template_sha"], "the template changed"
    assert_pattern(template, 0xab, 0, 4 * MiB)
    run(["qemu-img", "check", "-q", pc01])


@step("after destroy vol-wipe works and resets the instance to the pristine template",
      doms=[DOM])
def _():
    pc01 = instance("pc01.qcow2")
    assert image_has_pattern(pc01, 0x5a, 0, 65536), "the guest's write is not in %s" % pc01
    virsh("vol-wipe", "--pool", POOL, "pc01.qcow2")
    assert not image_has_pattern(pc01, 0x5a, 0, 65536), "the guest's write survived"
    assert_pattern(pc01, 0xab, 0, 4 * MiB)
    assert_pattern(pc01, 0xcd, 32 * MiB, MiB)
    info = qemu_img_info(pc01)
    assert info["backing-filename"] == template and info["virtual-size"] == 64 * MiB, info
    assert sha256(template) == state["template_sha"], "the template changed"
    # the reset instance starts again
    virsh("start", DOM)
    assert_running(DOM)
    guest_qemu_io(DOM, "read -P 0xab 0 4M", "read 4194304/4194304 bytes at offset 0")
    virsh("destroy", DOM)


@step("contrast: a stock dir pool deletes an overlay a running guest uses without a word",
      doms=[DOM_DIRPOOL])
def _():
    suite.cleanup_pool(DIRPOOL)
    virsh("pool-define-as", DIRPOOL, "dir", "--target", dirpool)
    virsh("pool-build", DIRPOOL)
    virsh("pool-start", DIRPOOL)
    base = os.path.join(dirpool, "base.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", base, "64M"])
    virsh("pool-refresh", DIRPOOL)
    virsh("vol-create-as", DIRPOOL, "overlay.qcow2", "64M", "--format", "qcow2",
          "--backing-vol", base, "--backing-vol-format", "qcow2")
    define(DOM_DIRPOOL, volume_disk(DIRPOOL, "overlay.qcow2"))
    virsh("start", DOM_DIRPOOL)
    assert_running(DOM_DIRPOOL)
    rc, out, err = run(["virsh", "-q", "vol-delete", "--pool", DIRPOOL, "overlay.qcow2"],
                       check=False)
    # this is the data loss stormpool's in-use check prevents
    assert rc == 0, "the dir pool refused: %s" % err
    assert not os.path.exists(os.path.join(dirpool, "overlay.qcow2"))
    assert_running(DOM_DIRPOOL)
    virsh("destroy", DOM_DIRPOOL)
    virsh("undefine", DOM_DIRPOOL)
    virsh("pool-destroy", DIRPOOL)
    virsh("pool-undefine", DIRPOOL)


# Stateless desktops. libvirt 9.0 validates <transient/> when the domain is
# defined, before a volume disk is translated to its file, and accepts it
# only on disks whose type is 'file' (qemuValidateDomainDeviceDefDiskTransient),
# so a <disk type='volume'> with <transient/> is refused for every pool type;
# the stormpool instance is given by its path (virsh vol-path) instead.
# cache='none' is accepted. At start libvirt creates the throw-away overlay
# with blockdev-create next to the disk's file: INSTANCE.TRANSIENT-DOMAIN,
# i.e. in the secondary tier, backing onto the instance (which QEMU then
# opens read-only); qemuProcessStop deletes it whenever QEMU ends.

@step("<transient/> on a <disk type='volume'> is refused by libvirt 9.0 at define "
      "(only 'file' disks)")
def _():
    suite.cleanup(undefine_domain, DOM_TRANSIENT_VOL)
    path = os.path.join(root, DOM_TRANSIENT_VOL + ".xml")
    with open(path, "w") as f:
        f.write(domain_xml(DOM_TRANSIENT_VOL,
                           volume_disk(POOL, "pc03.qcow2", extra="\n      <transient/>")))
    virsh_fails("define", path,
                expect="transient disk supported only with 'file' type (vda)")
    assert DOM_TRANSIENT_VOL not in domain_names()


@step("<transient/> with cache='none' on the instance's path starts; the throw-away "
      "layer is INSTANCE.TRANSIENT-DOMAIN in the secondary tier", doms=[DOM_TRANSIENT])
def _():
    pc03 = virsh("vol-path", "--pool", POOL, "pc03.qcow2").strip()
    assert pc03 == instance("pc03.qcow2"), pc03
    overlay = pc03 + ".TRANSIENT-" + DOM_TRANSIENT
    state["pc03_sha"] = sha256(pc03)
    define(DOM_TRANSIENT, file_disk(pc03, extra="\n      <transient/>"))
    virsh("start", DOM_TRANSIENT)
    assert_running(DOM_TRANSIENT)
    assert listdir(secondary).count(os.path.basename(overlay)) == 1, listdir(secondary)
    info = qemu_img_info(overlay)
    assert info["format"] == "qcow2", info
    assert info["backing-filename"] == pc03, info
    xml = disk_xml(DOM_TRANSIENT)
    assert re.search(r"<source file='%s' index='\d+'/>\s*"
                     r"<backingStore type='file' index='\d+'>\s*<format type='qcow2'/>\s*"
                     r"<source file='%s'/>\s*"
                     r"<backingStore type='file' index='\d+'>\s*<format type='qcow2'/>\s*"
                     r"<source file='%s'/>\s*<backingStore/>"
                     % (re.escape(overlay), re.escape(pc03), re.escape(template)), xml), xml
    assert "<transient/>" in xml, xml
    stats = domstats_block(DOM_TRANSIENT)[DOM_TRANSIENT]
    assert stats["block.0.path"] == overlay, stats
    state["transient_overlay"] = overlay


@step("pool-refresh while the transient guest runs lists the throw-away layer as a "
      "layer of the pool; it and its instance are protected", doms=[DOM_TRANSIENT])
def _():
    overlay = state["transient_overlay"]
    virsh("pool-refresh", POOL)
    names = vol_names(POOL)
    assert os.path.basename(overlay) in names, names
    assert "pc03.qcow2" in names, names
    info = virsh("vol-dumpxml", "--pool", POOL, os.path.basename(overlay))
    assert "<path>%s</path>" % instance("pc03.qcow2") in info, info
    virsh_fails("vol-delete", "--pool", POOL, os.path.basename(overlay),
                expect="cannot delete '%s': it is in use by a running guest"
                       % os.path.basename(overlay))
    # the throw-away layer backs onto the instance (and QEMU holds it
    # read-only below the layer): the layer is named first
    layer = "1 layer(s) in '%s' back onto it: %s" % (os.path.dirname(overlay),
                                                     os.path.basename(overlay))
    virsh_fails("vol-delete", "--pool", POOL, "pc03.qcow2",
                expect="cannot delete instance 'pc03.qcow2': " + layer)
    virsh_fails("vol-wipe", "--pool", POOL, "pc03.qcow2",
                expect="cannot wipe instance 'pc03.qcow2': " + layer)


@step("the transient guest's writes are thrown away: after destroy the layer is gone "
      "and the instance is byte for byte what it was", doms=[DOM_TRANSIENT])
def _():
    pc03 = instance("pc03.qcow2")
    overlay = state["transient_overlay"]
    before = sha256(overlay)
    guest_qemu_io(DOM_TRANSIENT, "write -P 0x5a 0 64k", "wrote 65536/65536 bytes at offset 0")
    guest_qemu_io(DOM_TRANSIENT, "read -P 0x5a 0 64k", "read 65536/65536 bytes at offset 0")
    guest_qemu_io(DOM_TRANSIENT, "flush", "")
    assert sha256(overlay) != before, "the write did not reach the throw-away layer"
    assert sha256(pc03) == state["pc03_sha"], "the write reached the instance"
    virsh("destroy", DOM_TRANSIENT)
    assert not os.path.exists(overlay), "%s left behind" % overlay
    assert sha256(pc03) == state["pc03_sha"], "the instance changed"
    assert not image_has_pattern(pc03, 0x5a, 0, 65536), "the guest's write is in the instance"
    assert_pattern(pc03, 0xab, 0, 4 * MiB)
    assert listdir(secondary) == ["pc01.qcow2", "pc02.qcow2", "pc03.qcow2", "pc04.qcow2"], \
        listdir(secondary)
    assert sha256(template) == state["template_sha"]


@step("the same after a guest-initiated power-off (ACPI S5): layer removed, "
      "instance unchanged", doms=[DOM_TRANSIENT])
def _():
    pc03 = instance("pc03.qcow2")
    overlay = state["transient_overlay"]
    virsh("start", DOM_TRANSIENT)
    assert os.path.exists(overlay), listdir(secondary)
    guest_qemu_io(DOM_TRANSIENT, "write -P 0x66 1M 64k",
                  "wrote 65536/65536 bytes at offset 1048576")
    # SeaBIOS maps the PIIX4 PM registers at 0x600 during POST (an unmapped
    # port reads 0xff); a write of SLP_EN with SLP_TYP 0 (S5) to PM1a_CNT
    # (0x604) is exactly how an OS powers the machine off. HMP 'o' performs
    # it in the guest's I/O space, so QEMU reports a guest shutdown.
    deadline = time.monotonic() + 20
    while "= 0x00" not in hmp(DOM_TRANSIENT, "i /b 0x604"):
        assert time.monotonic() < deadline, "SeaBIOS did not enable the ACPI PM registers"
        time.sleep(0.2)
    events = subprocess.Popen(["virsh", "-q", "event", "--domain", DOM_TRANSIENT,
                               "--event", "lifecycle", "--loop", "--timeout", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)  # let virsh register for the events
        hmp(DOM_TRANSIENT, "o /w 0x604 0x2000")
        deadline = time.monotonic() + 30
        while domstate(DOM_TRANSIENT) != "shut off":
            assert time.monotonic() < deadline, "still %s" % domstate(DOM_TRANSIENT)
            time.sleep(0.2)
    finally:
        time.sleep(0.5)
        events.terminate()
        seen = events.communicate()[0]
    assert "Shutdown Finished after guest request" in seen, seen
    assert virsh("domstate", "--reason", DOM_TRANSIENT).strip() == "shut off (shutdown)"
    assert not os.path.exists(overlay), "%s left behind" % overlay
    assert sha256(pc03) == state["pc03_sha"], "the instance changed"
    assert not image_has_pattern(pc03, 0x66, MiB, 65536), "the guest's write is in the instance"
    virsh("undefine", DOM_TRANSIENT)


@step("20 guests, each on its own instance with cache='none', run at once",
      doms=STORM[:3])
def _():
    for vol in STORM_VOLS:
        virsh("vol-create-as", POOL, vol, "64M", "--format", "qcow2",
              "--backing-vol", "tmpl.qcow2", "--backing-vol-format", "qcow2")
    for dom, vol in zip(STORM, STORM_VOLS):
        define(dom, volume_disk(POOL, vol))

    def start(dom):
        return run_timeout(["virsh", "-q", "start", dom], STORM_START_LIMIT, check=False)

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(STORM)) as pool:
        results = list(pool.map(start, STORM))
    elapsed = time.monotonic() - began
    print("# starting the 20 guests (in parallel) took %.1f s" % elapsed)
    failed = [(dom, r[2].strip()) for dom, r in zip(STORM, results) if r[0] != 0]
    assert not failed, "virsh start failed: %s" % failed
    assert elapsed < STORM_START_LIMIT, "starting 20 guests took %.1f s" % elapsed

    running = set(virsh("list", "--state-running", "--name").split())
    assert set(STORM) <= running, sorted(set(STORM) - running)
    for dom, vol in zip(STORM, STORM_VOLS):
        assert virsh("domblklist", dom).split() == ["vda", vol], virsh("domblklist", dom)
    stats = domstats_block(*STORM)
    paths = [stats[dom]["block.0.path"] for dom in STORM]
    assert paths == [instance(vol) for vol in STORM_VOLS], paths
    assert len(set(paths)) == 20

    pids = [qemu_pid(dom) for dom in STORM]
    rss = sum(proc_status_kib(pid, "VmRSS") for pid in pids)
    hwm = sum(proc_status_kib(pid, "VmHWM") for pid in pids)
    print("# 20 QEMU processes: RSS sum %.0f MiB now, peak RSS (VmHWM) sum %.0f MiB"
          % (rss / 1024, hwm / 1024))

    virsh_fails("vol-delete", "--pool", POOL, "st07.qcow2",
                expect="cannot delete 'st07.qcow2': " + IN_USE)
    virsh_fails("vol-delete", "--pool", POOL, "tmpl.qcow2",
                expect="cannot delete template 'tmpl.qcow2': 24 instance(s)")
    for dom in STORM:
        assert_running(dom)

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(STORM)) as pool:
        results = list(pool.map(lambda dom: run_timeout(["virsh", "-q", "destroy", dom],
                                                        120, check=False), STORM))
    print("# destroying the 20 (in parallel) took %.1f s" % (time.monotonic() - began))
    failed = [(dom, r[2].strip()) for dom, r in zip(STORM, results) if r[0] != 0]
    assert not failed, "virsh destroy failed: %s" % failed
    for dom in STORM:
        virsh("undefine", dom)
    assert not set(STORM) & set(domain_names()), domain_names()
    for vol in STORM_VOLS:
        virsh("vol-delete", "--pool", POOL, vol)
    assert sha256(template) == state["template_sha"]


def kvm_unusable():
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
    debug = os.path.join(root, "kvm-probe.debugcon")
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


KVM_STEP = "KVM variant: a <domain type='kvm'> on a stormpool instance starts"
try:
    kvm_reason, kvm_probe_error = kvm_unusable(), None
except Exception as exc:  # a broken probe is a failure, not a skip
    kvm_reason, kvm_probe_error = None, exc
if kvm_reason:
    suite.skip(KVM_STEP, kvm_reason)
else:
    @step(KVM_STEP, doms=[DOM_KVM])
    def _():
        if kvm_probe_error:
            raise AssertionError("the KVM probe failed: %r" % kvm_probe_error)
        define(DOM_KVM, volume_disk(POOL, "pc04.qcow2"), virt_type="kvm")
        run_timeout(["virsh", "-q", "start", DOM_KVM], 120)
        assert_running(DOM_KVM)
        assert "kvm support: enabled" in hmp(DOM_KVM, "info kvm")
        assert virsh("domblklist", DOM_KVM).split() == ["vda", "pc04.qcow2"]
        assert domstats_block(DOM_KVM)[DOM_KVM]["block.0.path"] == instance("pc04.qcow2")
        virsh_fails("vol-delete", "--pool", POOL, "pc04.qcow2", expect=IN_USE)
        virsh("destroy", DOM_KVM)
        virsh("undefine", DOM_KVM)


@step("virt-install --import --disk vol=%s/pc02.qcow2 creates and starts a guest on the "
      "instance" % POOL, doms=[DOM_VI])
def _():
    pools_before = sorted(virsh("pool-list", "--all", "--name").split())
    suite.cleanup(undefine_domain, DOM_VI)
    run_timeout(["virt-install", "--connect", "qemu:///system", "--name", DOM_VI,
                 "--virt-type", "qemu", "--memory", "64", "--vcpus", "1", "--import",
                 "--disk", "vol=%s/pc02.qcow2,bus=virtio,cache=none" % POOL,
                 "--network", "none", "--graphics", "none",
                 "--osinfo", "detect=on,require=off", "--noautoconsole"], 180)
    assert_running(DOM_VI)
    # virt-install resolves vol= to the volume's path: a file disk on the instance
    xml = disk_xml(DOM_VI)
    pc02 = instance("pc02.qcow2")
    assert re.search(r"<disk type='file' device='disk'>\s*"
                     r"<driver name='qemu' type='qcow2' cache='none'/>\s*"
                     r"<source file='%s' index='\d+'/>\s*"
                     r"<backingStore type='file' index='\d+'>\s*<format type='qcow2'/>\s*"
                     r"<source file='%s'/>" % (re.escape(pc02), re.escape(template)), xml), xml
    assert "<domain type='qemu'" in virsh("dumpxml", DOM_VI)
    assert virsh("domblklist", DOM_VI).split() == ["vda", pc02]
    # no dir pool was made behind our back
    assert sorted(virsh("pool-list", "--all", "--name").split()) == pools_before
    virsh_fails("vol-wipe", "--pool", POOL, "pc02.qcow2", expect=IN_USE)
    virsh("destroy", DOM_VI)
    virsh("undefine", DOM_VI)


# ---- a real guest ---------------------------------------------------------
# The Debian template of tools/build-guest-image (bootloader, kernel and
# initrd read from the template, systemd to multi-user.target) boots under
# TCG from a stormpool instance backed by a copy replica.

REAL_POOL = "spg-guests-real"
DOM_REAL = "spg-guests-debian"
REAL_BOOT_LIMIT = 900       # seconds; a TCG boot on 2 shared cores
BUILD_LIMIT = 1500          # seconds to build the guest image if not cached
GUEST_MARKER = "STORMPOOL-GUEST-READY boot=1"
real_primary = os.path.join(root, "real", "hdd")
real_secondary = os.path.join(root, "real", "ssd")
real_template = os.path.join(real_primary, "debian.qcow2")
real_console = os.path.join(root, "real", "console.log")


def real_domain_xml():
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
""" % (DOM_REAL, volume_disk(REAL_POOL, "debian-pc01.qcow2"), real_console)


def data_at_top(path):
    """Bytes of guest data the image @path holds itself (not its backing)."""
    rc, out, err = run(["qemu-img", "map", "-U", "--output=json", path])
    return sum(e["length"] for e in json.loads(out) if e.get("data") and e["depth"] == 0)


@step("a real Debian guest boots (TCG) from a stormpool instance on a copy replica "
      "to its ready marker", doms=[DOM_REAL])
def _():
    rc, out, err = run_timeout([os.path.join(TOP, "tools", "build-guest-image")], BUILD_LIMIT)
    image = out.strip()
    os.makedirs(real_primary)
    run(["cp", "--sparse=always", image, real_template])
    suite.cleanup_pool(REAL_POOL)
    define_pool(REAL_POOL, real_primary, real_secondary, replica="policy='copy'")
    virsh("pool-build", REAL_POOL)
    virsh("pool-start", REAL_POOL)
    virsh("vol-create-as", REAL_POOL, "debian-pc01.qcow2", "2G", "--format", "qcow2",
          "--backing-vol", "debian.qcow2", "--backing-vol-format", "qcow2")
    pc = os.path.join(real_secondary, "debian-pc01.qcow2")
    replica = qemu_img_info(pc)["backing-filename"]
    assert replica.startswith(real_secondary + "/.stormpool-replicas/"), replica
    state["real"] = {"instance": pc, "replica": replica,
                     "template_sha": sha256(real_template), "replica_sha": sha256(replica),
                     "instance_data": data_at_top(pc)}
    suite.cleanup(undefine_domain, DOM_REAL)
    path = os.path.join(root, DOM_REAL + ".xml")
    with open(path, "w") as f:
        f.write(real_domain_xml())
    virsh("define", path)
    start = time.monotonic()
    virsh("start", DOM_REAL)
    text = ""
    while GUEST_MARKER not in text:
        assert time.monotonic() - start < REAL_BOOT_LIMIT, \
            "no ready marker after %d s; console:\n%s" % (REAL_BOOT_LIMIT, text[-3000:])
        assert domstate(DOM_REAL) == "running", "the guest stopped; console:\n" + text[-3000:]
        time.sleep(1)
        with open(real_console, errors="replace") as f:
            text = f.read()
    print("# the Debian guest booted to its ready marker in %.1f s (TCG)"
          % (time.monotonic() - start))
    # The login prompt follows the marker, a moment later on a loaded host.
    prompt_by = time.monotonic() + 60
    try:
        while "stormpool-guest login:" not in text and time.monotonic() < prompt_by:
            time.sleep(1)
            with open(real_console, errors="replace") as f:
                text = f.read()
        assert "stormpool-guest login:" in text, text[-3000:]
    finally:
        virsh("destroy", DOM_REAL)


@step("the guest wrote into its instance only: template and replica unchanged "
      "(sha256), the instance holds the guest's writes", doms=[DOM_REAL])
def _():
    real = state["real"]
    assert sha256(real_template) == real["template_sha"]
    assert sha256(real["replica"]) == real["replica_sha"]
    written = data_at_top(real["instance"])
    assert written > real["instance_data"], (written, real["instance_data"])
    run(["qemu-img", "check", "-q", real["instance"]])
    virsh("undefine", DOM_REAL)
    virsh("vol-delete", "--pool", REAL_POOL, "debian-pc01.qcow2")
    virsh("vol-delete", "--pool", REAL_POOL, "debian.qcow2")
    virsh("pool-destroy", REAL_POOL)
    virsh("pool-undefine", REAL_POOL)


@step("the template's sha256 never changed; teardown leaves nothing behind")
def _():
    assert sha256(template) == state["template_sha"]
    virsh("undefine", DOM)
    left = [d for d in domain_names() if d.startswith(("spg-guests", DOM_VI))]
    assert not left, left
    for name in ("pc01.qcow2", "pc02.qcow2", "pc03.qcow2", "pc04.qcow2"):
        virsh("vol-delete", "--pool", POOL, name)
    virsh("vol-delete", "--pool", POOL, "tmpl.qcow2")
    assert listdir(primary) == [] and listdir(secondary) == [], \
        (listdir(primary), listdir(secondary))
    virsh("pool-destroy", POOL)
    virsh("pool-undefine", POOL)
    names = virsh("pool-list", "--all", "--name").split()
    assert POOL not in names and DIRPOOL not in names, names
    assert daemon_alive()


suite.finish()
