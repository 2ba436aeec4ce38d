"""Hot replicas and the RAM tier through the private daemons and plain virsh.

policy='hot': while a template (by its identity) has no hot set, instances
back directly onto it; a copy-on-read boot of one of them (simulated here
with qemu-io -C reads through the instance, which is what QEMU's
copy_on_read='on' does with a guest's reads) leaves the read clusters in
its overlay; pool-refresh or the next vol-create learns the hot set from
it and makes the hot replica, a qcow2 overlay of the template holding
those clusters, onto which the following instances back. Covered:
learning, reuse and status in pool-dumpxml, template protection, a
template changed out of band (learning starts again, old instances keep
their replica), a RAM tier on a tmpfs emptied by a host reboot (rebuilt at
pool-start), the RAM tier's cap (eviction of an unused replica, refusal
with a clear error), and kill -9 of virtstoraged while a hot replica is
made (only a temporary file, removed at the next start).

Every pool and directory is named sph-*; everything is removed at the end,
also when a step fails.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

from taplib import (Suite, define_pool, listdir, make_tmpdir, qemu_img_info, run,
                    virsh, virsh_fails, wait_for, assert_pattern, PREFIX, TOP)
try:
    from taplib import start_watchdog
except ImportError:
    start_watchdog = None

MiB = 1024 * 1024
NS = "urn:stormpool:pool:1.0"
REPLICAS = ".stormpool-replicas"
HOT_SETS = ".stormpool-hot-sets"
TMP_PREFIX = ".stormpool-tmp-"
VIRT_ENV = os.path.join(TOP, "tools", "virt-env")
STORAGED_PID = os.path.join(PREFIX, "var", "run", "virtstoraged.pid")
TIME_LIMIT = 300

P_HOT = "sph-hot"
P_RAM = "sph-ram"
P_CAP = "sph-cap"
P_CRASH = "sph-crash"

suite = Suite("hot")
root = make_tmpdir("sph-hot-")
suite.cleanup_dir(root)
# a real tmpfs for the RAM tiers, as an admin would use
ram_root = os.path.join("/dev/shm", "sph-wt13hot-%d" % os.getpid())
state = {"children": []}


def before_exit():
    for proc in state["children"]:
        if proc.poll() is None:
            proc.kill()
    shutil.rmtree(ram_root, ignore_errors=True)
    print("# left behind for inspection: %s and the sph-* pools" % root)


watchdog = start_watchdog(suite, TIME_LIMIT, before_exit) if start_watchdog else None
suite.cleanup(shutil.rmtree, ram_root, True)


# ---- helpers ------------------------------------------------------------

def tiers(name):
    return os.path.join(root, name, "hdd"), os.path.join(root, name, "ssd")


def qemu_io(path, *commands, cor=False):
    argv = ["qemu-io", "-f", "qcow2"] + (["-C"] if cor else [])
    for c in commands:
        argv += ["-c", c]
    return run(argv + [path])[1]


def make_template(path, size, writes):
    """A qcow2 template; @writes are (pattern, offset, length)."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(size)])
    qemu_io(path, *["write -q -P 0x%02x %d %d" % w for w in writes])


def boot_with_copy_on_read(instance, reads):
    """What a boot with <driver copy_on_read='on'/> leaves behind: every
    cluster it read is copied into the instance's overlay."""
    qemu_io(instance, *["read -q %d %d" % r for r in reads], cor=True)


def own_data_bytes(image):
    """Bytes the image holds itself (not its backing file)."""
    out = run(["qemu-img", "map", "-U", "--output=json", image])[1]
    return sum(e["length"] for e in json.loads(out) if e["depth"] == 0 and e["data"])


def backing_of(overlay):
    return qemu_img_info(overlay)["backing-filename"]


def create_instance(pool, name, template, size=64 * MiB):
    virsh("vol-create-as", pool, name, str(size), "--format", "qcow2",
          "--backing-vol", template, "--backing-vol-format", "qcow2")


def new_pool(name, primary, secondary, replica):
    # A pool left by an interrupted earlier run must not fail this one.
    run(["virsh", "-q", "pool-destroy", name], check=False)
    run(["virsh", "-q", "pool-undefine", name], check=False)
    suite.cleanup_pool(name)
    define_pool(name, primary, secondary, replica=replica)
    virsh("pool-build", name)
    virsh("pool-start", name)


def pool_replicas(pool):
    xml = virsh("pool-dumpxml", pool)
    node = ET.fromstring(xml).find("{%s}replicas" % NS)
    assert node is not None, xml
    return node.get("policy"), [dict(r.attrib) for r in node.findall("{%s}replica" % NS)]


def ram_status(pool):
    xml = virsh("pool-dumpxml", pool)
    for tier in ET.fromstring(xml).iter("{%s}tier" % NS):
        if tier.get("name") == "ram":
            return {c.tag.split("}")[1]: int(c.text) for c in tier}
    raise AssertionError("no RAM tier status in:\n" + xml)


def hot_sets(secondary, template):
    return listdir(os.path.join(secondary, HOT_SETS, template))


def tmp_files(d):
    return [f for f in listdir(d) if f.startswith(TMP_PREFIX)]


def pool_running(pool):
    rc, out, _ = run(["virsh", "-q", "pool-info", pool], check=False)
    return rc == 0 and "running" in out


# Every template: 64 MiB, data in two places; the "boot" reads 4 MiB of
# the first and 2 MiB of the second.
WRITES = [(0x11, 0, 8 * MiB), (0x22, 32 * MiB, 8 * MiB)]
READS = [(0, 4 * MiB), (32 * MiB, 2 * MiB)]
HOT_BYTES = 6 * MiB


# ---- 1. learning, reuse, protection, a changed template -------------------

hot_hdd, hot_ssd = tiers("hot")
t_hot = os.path.join(hot_hdd, "t.qcow2")


@suite.step("1a. policy='hot': before a hot set is known, an instance backs onto the template")
def learning_instance():
    os.makedirs(hot_hdd)
    new_pool(P_HOT, hot_hdd, hot_ssd, "policy='hot'")
    make_template(t_hot, 64 * MiB, WRITES)
    virsh("pool-refresh", P_HOT)
    create_instance(P_HOT, "learner.qcow2", "t.qcow2")
    assert backing_of(os.path.join(hot_ssd, "learner.qcow2")) == t_hot
    virsh("pool-refresh", P_HOT)
    assert hot_sets(hot_ssd, "t.qcow2") == [], "learned from an instance nobody booted"


@suite.step("1b. a copy-on-read boot, then pool-refresh: the hot set is learned "
            "and the hot replica holds exactly the clusters read")
def learn():
    boot_with_copy_on_read(os.path.join(hot_ssd, "learner.qcow2"), READS)
    virsh("pool-refresh", P_HOT)
    sets = hot_sets(hot_ssd, "t.qcow2")
    assert len(sets) == 1, sets
    replica = os.path.join(hot_ssd, REPLICAS, "t.qcow2", sets[0])
    wait_for(lambda: os.path.exists(replica), 60, "the hot replica")
    info = qemu_img_info(replica)
    assert info["format"] == "qcow2" and info["backing-filename"] == t_hot, info
    assert own_data_bytes(replica) == HOT_BYTES, own_data_bytes(replica)
    state["hot_replica"] = replica


@suite.step("1c. the next instances back onto the hot replica; status in pool-dumpxml")
def reuse():
    replica = state["hot_replica"]
    create_instance(P_HOT, "a.qcow2", "t.qcow2")
    create_instance(P_HOT, "b.qcow2", "t.qcow2")
    a = os.path.join(hot_ssd, "a.qcow2")
    assert backing_of(a) == replica
    assert backing_of(os.path.join(hot_ssd, "b.qcow2")) == replica
    assert_pattern(a, 0x11, 0, 8 * MiB)          # in the hot set and beyond it
    assert_pattern(a, 0x22, 32 * MiB, 8 * MiB)
    assert_pattern(a, 0x00, 48 * MiB, MiB)
    virsh("pool-refresh", P_HOT)
    policy, replicas = pool_replicas(P_HOT)
    assert policy == "hot", policy
    mine = [r for r in replicas if r["path"] == replica]
    assert len(mine) == 1 and mine[0]["dependents"] == "2", replicas


@suite.step("1d. the template of a hot replica is protected like any other")
def protected():
    virsh_fails("vol-delete", "--pool", P_HOT, "t.qcow2",
                expect="3 instance(s) depend on it: a.qcow2, b.qcow2, learner.qcow2")


@suite.step("1e. a template changed out of band has a new identity: learning starts "
            "again, the old instances keep their hot replica, the old hot set goes")
def changed_template():
    old = state["hot_replica"]
    # the learner backs directly onto the template: an out-of-band change
    # would corrupt it, and it would be learned from again
    virsh("vol-delete", "--pool", P_HOT, "learner.qcow2")
    time.sleep(0.01)
    qemu_io(t_hot, "write -q -P 0x33 8M 1M")
    virsh("pool-refresh", P_HOT)
    create_instance(P_HOT, "c.qcow2", "t.qcow2")
    assert backing_of(os.path.join(hot_ssd, "c.qcow2")) == t_hot
    assert hot_sets(hot_ssd, "t.qcow2") == [], hot_sets(hot_ssd, "t.qcow2")
    assert os.path.exists(old)
    boot_with_copy_on_read(os.path.join(hot_ssd, "c.qcow2"), [(8 * MiB, MiB)])
    virsh("pool-refresh", P_HOT)
    create_instance(P_HOT, "d.qcow2", "t.qcow2")
    new = backing_of(os.path.join(hot_ssd, "d.qcow2"))
    assert new != old and os.path.dirname(new) == os.path.dirname(old), (new, old)
    assert own_data_bytes(new) == MiB, own_data_bytes(new)
    assert_pattern(os.path.join(hot_ssd, "d.qcow2"), 0x33, 8 * MiB, MiB)


@suite.step("1f. deleting every instance of an old hot replica collects it")
def collect_old():
    old = state["hot_replica"]
    for name in ("a.qcow2", "b.qcow2"):
        virsh("vol-delete", "--pool", P_HOT, name)
    virsh("pool-refresh", P_HOT)
    assert not os.path.exists(old), "unused old hot replica kept"


# ---- 2. the RAM tier: a host reboot -----------------------------------------

ram_hdd, ram_ssd = tiers("ram")
t_ram = os.path.join(ram_hdd, "t.qcow2")
ram_tier = os.path.join(ram_root, "lab")


@suite.step("2a. policy='hot' tier=/dev/shm/...: the tier is made at pool-start, "
            "the hot replica lives in it")
def ram_learn():
    os.makedirs(ram_hdd)
    new_pool(P_RAM, ram_hdd, ram_ssd, "policy='hot' tier='%s' cap='64M'" % ram_tier)
    assert os.path.isdir(ram_tier)
    make_template(t_ram, 64 * MiB, WRITES)
    virsh("pool-refresh", P_RAM)
    create_instance(P_RAM, "learner.qcow2", "t.qcow2")
    boot_with_copy_on_read(os.path.join(ram_ssd, "learner.qcow2"), READS)
    virsh("pool-refresh", P_RAM)
    create_instance(P_RAM, "a.qcow2", "t.qcow2")
    replica = backing_of(os.path.join(ram_ssd, "a.qcow2"))
    assert replica.startswith(ram_tier + "/"), replica
    assert own_data_bytes(replica) == HOT_BYTES
    assert hot_sets(ram_ssd, "t.qcow2") == [os.path.basename(replica)]
    virsh("pool-refresh", P_RAM)
    status = ram_status(P_RAM)
    assert status["capacity"] == 64 * MiB and status["allocation"] >= HOT_BYTES, status
    state["ram_replica"] = replica


@suite.step("2b. host reboot (tmpfs emptied): pool-start makes the hot replica again")
def ram_reboot():
    replica = state["ram_replica"]
    virsh("pool-destroy", P_RAM)
    shutil.rmtree(ram_root)
    virsh("pool-start", P_RAM)
    assert os.path.exists(replica), "hot replica not made again at pool-start"
    assert own_data_bytes(replica) == HOT_BYTES
    a = os.path.join(ram_ssd, "a.qcow2")
    assert_pattern(a, 0x11, 0, 8 * MiB)
    assert_pattern(a, 0x22, 32 * MiB, 8 * MiB)


@suite.step("2c. emptied while running: pool-refresh makes it again")
def ram_refresh():
    replica = state["ram_replica"]
    os.unlink(replica)
    virsh("pool-refresh", P_RAM)
    assert os.path.exists(replica)
    run(["qemu-img", "check", "-q", "-U", replica])


# ---- 3. the cap ---------------------------------------------------------------

cap_hdd, cap_ssd = tiers("cap")
cap_tier = os.path.join(ram_root, "cap")


@suite.step("3a. copy replicas in a RAM tier capped at 40M: an unused replica is "
            "evicted to make room")
def cap_evict():
    os.makedirs(cap_hdd)
    new_pool(P_CAP, cap_hdd, cap_ssd, "policy='copy' tier='%s' cap='40M'" % cap_tier)
    for name in ("t1.qcow2", "t2.qcow2"):
        make_template(os.path.join(cap_hdd, name), 64 * MiB, [(0x44, 0, 24 * MiB)])
    virsh("pool-refresh", P_CAP)
    create_instance(P_CAP, "i1.qcow2", "t1.qcow2")
    r1 = backing_of(os.path.join(cap_ssd, "i1.qcow2"))
    assert r1.startswith(cap_tier + "/"), r1
    # the instance goes behind libvirt's back: its replica is unused now
    os.unlink(os.path.join(cap_ssd, "i1.qcow2"))
    create_instance(P_CAP, "i2.qcow2", "t2.qcow2")
    assert not os.path.exists(r1), "unused replica not evicted"
    virsh("pool-refresh", P_CAP)
    assert ram_status(P_CAP)["allocation"] <= 40 * MiB


@suite.step("3b. a replica that cannot fit under the cap is refused, nothing is made")
def cap_refuse():
    virsh_fails("vol-create-as", P_CAP, "i3.qcow2", str(64 * MiB), "--format", "qcow2",
                "--backing-vol", "t1.qcow2", "--backing-vol-format", "qcow2",
                expect="is capped at 40.0 MiB")
    assert not os.path.exists(os.path.join(cap_ssd, "i3.qcow2"))
    assert ram_status(P_CAP)["allocation"] <= 40 * MiB


# ---- 4. kill -9 while a hot replica is made -------------------------------------

crash_hdd, crash_ssd = tiers("crash")
t_crash = os.path.join(crash_hdd, "big.qcow2")
BIG_READ = 384 * MiB


@suite.step("4. kill -9 virtstoraged while the pool makes a hot replica: only a "
            "temporary file, removed at the next start; never a partial replica")
def crash_during_hot_replica():
    os.makedirs(crash_hdd)
    new_pool(P_CRASH, crash_hdd, crash_ssd, "policy='hot'")
    virsh("pool-autostart", P_CRASH)
    make_template(t_crash, 512 * MiB, [(0x55, 0, BIG_READ)])
    virsh("pool-refresh", P_CRASH)
    create_instance(P_CRASH, "learner.qcow2", "big.qcow2", 512 * MiB)
    boot_with_copy_on_read(os.path.join(crash_ssd, "learner.qcow2"), [(0, BIG_READ)])
    # the refresh's background work learns the hot set and makes the hot
    # replica, which the vol-create waits for
    virsh("pool-refresh", P_CRASH, wait=False)
    rdir = os.path.join(crash_ssd, REPLICAS, "big.qcow2")
    proc = subprocess.Popen(["virsh", "-q", "vol-create-as", P_CRASH, "victim.qcow2",
                             str(512 * MiB), "--format", "qcow2", "--backing-vol",
                             "big.qcow2", "--backing-vol-format", "qcow2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state["children"].append(proc)
    tmp = wait_for(lambda: tmp_files(rdir), 60, "the hot replica's temporary file",
                   interval=0.005)
    tmp = os.path.join(rdir, tmp[0])
    with open(STORAGED_PID) as f:
        pid = int(f.read().strip())
    try:
        os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10, "virtstoraged to die")
        assert os.path.exists(tmp), "temporary file vanished before the restart"
        final = [f for f in listdir(rdir) if not f.startswith(TMP_PREFIX)]
        assert final == [], "a replica under its final name after the kill: %s" % final
    finally:
        run([VIRT_ENV, "start"])
    wait_for(lambda: pool_running(P_CRASH), 30, "the autostarted pool to run again")
    wait_for(lambda: not os.path.exists(tmp), 60, "the temporary file to go after the restart")
    # the refresh at start knows the hot set and makes the replica again
    sets = hot_sets(crash_ssd, "big.qcow2")
    assert len(sets) == 1, sets
    replica = os.path.join(rdir, sets[0])
    wait_for(lambda: os.path.exists(replica), 120, "the hot replica to be made again")
    assert own_data_bytes(replica) == BIG_READ
    run(["qemu-img", "check", "-q", "-U", replica])
    wait_for(lambda: tmp_files(rdir) == [], 60, "no temporary file")


suite.finish()
