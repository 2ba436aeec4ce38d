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

One scenario per test; each makes its own pools (spt-*), tiers and
templates through the fixtures of conftest.py, and runs alone (-k NAME).
The test marked disruptive kills the shared virtstoraged.
"""

import json
import os
import shutil
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (assert_pattern, backing_of, listdir, qemu_img_info, qemu_io,
                              refused, run, tmp_files, wait_for)

MiB = 1024 * 1024
NS = sp.NS
REPLICAS = sp.REPLICAS
HOT_SETS = ".stormpool-hot-sets"
TMP_PREFIX = sp.TMP_PREFIX
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID      # SP_ERROR_IN_USE
NO_SPACE = libvirt.VIR_ERR_OPERATION_FAILED     # SP_ERROR_NO_SPACE

# Every template: 64 MiB, data in two places; the "boot" reads 4 MiB of
# the first and 2 MiB of the second.
WRITES = [(0x11, 0, 8 * MiB), (0x22, 32 * MiB, 8 * MiB)]
READS = [(0, 4 * MiB), (32 * MiB, 2 * MiB)]
HOT_BYTES = 6 * MiB
BIG_READ = 384 * MiB


# ---- helpers ------------------------------------------------------------

def boot_with_copy_on_read(instance, reads):
    """What a boot with <driver copy_on_read='on'/> leaves behind: every
    cluster it read is copied into the instance's overlay."""
    qemu_io(instance, *["read -q %d %d" % r for r in reads], cor=True)


def own_data_bytes(image):
    """Bytes the image holds itself (not its backing file)."""
    out = run(["qemu-img", "map", "-U", "--output=json", image])[1]
    return sum(e["length"] for e in json.loads(out) if e["depth"] == 0 and e["data"])


def create_instance(virsh, pool, name, template, size=64 * MiB):
    virsh("vol-create-as", pool.name, name, str(size), "--format", "qcow2",
          "--backing-vol", template, "--backing-vol-format", "qcow2")


def pool_replicas(virsh, pool):
    xml = virsh("pool-dumpxml", pool.name)
    node = ET.fromstring(xml).find("{%s}replicas" % NS)
    assert node is not None, xml
    return node.get("policy"), [dict(r.attrib) for r in node.findall("{%s}replica" % NS)]


def ram_status(virsh, pool):
    xml = virsh("pool-dumpxml", pool.name)
    for tier in ET.fromstring(xml).iter("{%s}tier" % NS):
        if tier.get("name") == "ram":
            return {c.tag.split("}")[1]: int(c.text) for c in tier}
    raise AssertionError("no RAM tier status in:\n" + xml)


def hot_sets(secondary, template):
    return listdir(os.path.join(secondary, HOT_SETS, template))


def pool_running(pool_name):
    rc, out, _ = run(["virsh", "-q", "pool-info", pool_name], check=False)
    return rc == 0 and "running" in out


@pytest.fixture
def ram_root(request):
    """A directory on a real tmpfs for the RAM tiers, as an admin would
    use; removed at the end of the test (tests ask for it before `pool`,
    so that it goes after their pools)."""
    name = "spt-%s-%d" % (request.node.name.replace("test_", "", 1)[:40], os.getpid())
    path = os.path.join("/dev/shm", name)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- shared setups: every test that needs one runs it itself ----------------

def hot_pool_with_learner(pool, template, virsh):
    """policy='hot', the template t.qcow2 and the instance 'learner' on it."""
    p = pool(replica="policy='hot'")
    t = template(p.template_path("t.qcow2"), 64 * MiB, WRITES)
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "learner.qcow2", "t.qcow2")
    return p, t


def learned_hot_pool(pool, template, virsh, instances=()):
    """hot_pool_with_learner, booted with copy-on-read and refreshed: the
    hot replica is made; @instances are made on it. Returns (pool,
    template, hot replica)."""
    p, t = hot_pool_with_learner(pool, template, virsh)
    boot_with_copy_on_read(p.path("learner.qcow2"), READS)
    virsh("pool-refresh", p.name)
    sets = hot_sets(p.secondary, "t.qcow2")
    assert len(sets) == 1, sets
    replica = os.path.join(p.secondary, REPLICAS, "t.qcow2", sets[0])
    wait_for(lambda: os.path.exists(replica), 60, "the hot replica")
    for name in instances:
        create_instance(virsh, p, name, "t.qcow2")
    return p, t, replica


def change_hot_template(virsh, p, t):
    """1e's change: the learner goes, the template changes out of band, c
    backs onto it and is booted, d backs onto the new hot replica."""
    # the learner backs directly onto the template: an out-of-band change
    # would corrupt it, and it would be learned from again
    virsh("vol-delete", "--pool", p.name, "learner.qcow2")
    time.sleep(0.01)
    qemu_io(t, "write -q -P 0x33 8M 1M")
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "c.qcow2", "t.qcow2")


def ram_pool_learned(pool, template, virsh, ram_root):
    """policy='hot' with its RAM tier in /dev/shm capped at 64M, the hot
    replica learned and the instance 'a' on it. Returns (pool, tier,
    hot replica)."""
    ram_tier = os.path.join(ram_root, "lab")
    p = pool(replica="policy='hot' tier='%s' cap='64M'" % ram_tier)
    assert os.path.isdir(ram_tier)
    template(p.template_path("t.qcow2"), 64 * MiB, WRITES)
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "learner.qcow2", "t.qcow2")
    boot_with_copy_on_read(p.path("learner.qcow2"), READS)
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "a.qcow2", "t.qcow2")
    return p, ram_tier, backing_of(p.path("a.qcow2"))


def capped_pool(pool, template, virsh, ram_root):
    """Copy replicas in a RAM tier capped at 40M, templates t1 and t2 of
    24 MiB of data each."""
    cap_tier = os.path.join(ram_root, "cap")
    p = pool(replica="policy='copy' tier='%s' cap='40M'" % cap_tier)
    for name in ("t1.qcow2", "t2.qcow2"):
        template(p.template_path(name), 64 * MiB, [(0x44, 0, 24 * MiB)])
    virsh("pool-refresh", p.name)
    return p, cap_tier


def evict_for_second_replica(virsh, p):
    """i1 on t1's replica, removed behind libvirt's back; then i2 on t2's,
    for which t1's unused replica must go. Returns t1's replica."""
    create_instance(virsh, p, "i1.qcow2", "t1.qcow2")
    r1 = backing_of(p.path("i1.qcow2"))
    # the instance goes behind libvirt's back: its replica is unused now
    os.unlink(p.path("i1.qcow2"))
    create_instance(virsh, p, "i2.qcow2", "t2.qcow2")
    return r1


# ---- 1. learning, reuse, protection, a changed template -------------------

def test_instance_backs_onto_template_before_a_hot_set(pool, template, virsh):
    """1a. policy='hot': before a hot set is known, an instance backs onto
    the template."""
    p, t = hot_pool_with_learner(pool, template, virsh)
    assert backing_of(p.path("learner.qcow2")) == t
    virsh("pool-refresh", p.name)
    assert hot_sets(p.secondary, "t.qcow2") == [], "learned from an instance nobody booted"


def test_hot_set_learned_from_a_copy_on_read_boot(pool, template, virsh):
    """1b. a copy-on-read boot, then pool-refresh: the hot set is learned
    and the hot replica holds exactly the clusters read."""
    p, t = hot_pool_with_learner(pool, template, virsh)
    boot_with_copy_on_read(p.path("learner.qcow2"), READS)
    virsh("pool-refresh", p.name)
    sets = hot_sets(p.secondary, "t.qcow2")
    assert len(sets) == 1, sets
    replica = os.path.join(p.secondary, REPLICAS, "t.qcow2", sets[0])
    wait_for(lambda: os.path.exists(replica), 60, "the hot replica")
    info = qemu_img_info(replica)
    # the hot replica names the template by its kept version's path (the
    # same file), which keeps its contents when a new version is published
    version = os.path.join(p.primary, ".stormpool-versions", "t.qcow2", sets[0])
    assert info["format"] == "qcow2" and info["backing-filename"] == version, info
    assert os.stat(version).st_ino == os.stat(t).st_ino
    assert own_data_bytes(replica) == HOT_BYTES, own_data_bytes(replica)


def test_next_instances_back_onto_the_hot_replica(pool, template, virsh):
    """1c. the next instances back onto the hot replica; status in
    pool-dumpxml."""
    p, _, replica = learned_hot_pool(pool, template, virsh, ("a.qcow2", "b.qcow2"))
    a = p.path("a.qcow2")
    assert backing_of(a) == replica
    assert backing_of(p.path("b.qcow2")) == replica
    assert_pattern(a, 0x11, 0, 8 * MiB)          # in the hot set and beyond it
    assert_pattern(a, 0x22, 32 * MiB, 8 * MiB)
    assert_pattern(a, 0x00, 48 * MiB, MiB)
    virsh("pool-refresh", p.name)
    policy, replicas = pool_replicas(virsh, p)
    assert policy == "hot", policy
    mine = [r for r in replicas if r["path"] == replica]
    assert len(mine) == 1 and mine[0]["dependents"] == "2", replicas


def test_template_of_a_hot_replica_is_protected(pool, template, virsh):
    """1d. the template of a hot replica is protected like any other."""
    p, _, _ = learned_hot_pool(pool, template, virsh, ("a.qcow2", "b.qcow2"))
    with refused(IN_USE, "3 instance(s) depend on it: a.qcow2, b.qcow2, learner.qcow2"):
        p.vol("t.qcow2").delete(0)


def test_changed_template_learns_again(pool, template, virsh):
    """1e. a template changed out of band has a new identity: learning
    starts again, the old instances keep their hot replica, the old hot
    set goes."""
    p, t, old = learned_hot_pool(pool, template, virsh, ("a.qcow2", "b.qcow2"))
    change_hot_template(virsh, p, t)
    assert backing_of(p.path("c.qcow2")) == t
    assert hot_sets(p.secondary, "t.qcow2") == [], hot_sets(p.secondary, "t.qcow2")
    assert os.path.exists(old)
    boot_with_copy_on_read(p.path("c.qcow2"), [(8 * MiB, MiB)])
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "d.qcow2", "t.qcow2")
    new = backing_of(p.path("d.qcow2"))
    assert new != old and os.path.dirname(new) == os.path.dirname(old), (new, old)
    assert own_data_bytes(new) == MiB, own_data_bytes(new)
    assert_pattern(p.path("d.qcow2"), 0x33, 8 * MiB, MiB)


def test_old_hot_replica_collected_with_its_instances(pool, template, virsh):
    """1f. deleting every instance of an old hot replica collects it."""
    p, t, old = learned_hot_pool(pool, template, virsh, ("a.qcow2", "b.qcow2"))
    change_hot_template(virsh, p, t)
    for name in ("a.qcow2", "b.qcow2"):
        virsh("vol-delete", "--pool", p.name, name)
    virsh("pool-refresh", p.name)
    assert not os.path.exists(old), "unused old hot replica kept"


# ---- 2. the RAM tier: a host reboot -----------------------------------------

def test_hot_replica_lives_in_the_ram_tier(ram_root, pool, template, virsh):
    """2a. policy='hot' tier=/dev/shm/...: the tier is made at pool-start,
    the hot replica lives in it."""
    p, ram_tier, replica = ram_pool_learned(pool, template, virsh, ram_root)
    assert replica.startswith(ram_tier + "/"), replica
    assert own_data_bytes(replica) == HOT_BYTES
    assert hot_sets(p.secondary, "t.qcow2") == [os.path.basename(replica)]
    virsh("pool-refresh", p.name)
    status = ram_status(virsh, p)
    assert status["capacity"] == 64 * MiB and status["allocation"] >= HOT_BYTES, status


def test_ram_tier_emptied_by_a_reboot_is_rebuilt_at_start(ram_root, pool, template, virsh):
    """2b. host reboot (tmpfs emptied): pool-start makes the hot replica
    again."""
    p, _, replica = ram_pool_learned(pool, template, virsh, ram_root)
    virsh("pool-destroy", p.name)
    shutil.rmtree(ram_root)
    virsh("pool-start", p.name)
    assert os.path.exists(replica), "hot replica not made again at pool-start"
    assert own_data_bytes(replica) == HOT_BYTES
    a = p.path("a.qcow2")
    assert_pattern(a, 0x11, 0, 8 * MiB)
    assert_pattern(a, 0x22, 32 * MiB, 8 * MiB)


def test_ram_tier_emptied_while_running_is_rebuilt_at_refresh(ram_root, pool, template,
                                                              virsh):
    """2c. emptied while running: pool-refresh makes it again."""
    p, _, replica = ram_pool_learned(pool, template, virsh, ram_root)
    os.unlink(replica)
    virsh("pool-refresh", p.name)
    assert os.path.exists(replica)
    run(["qemu-img", "check", "-q", "-U", replica])


# ---- 3. the cap ---------------------------------------------------------------

def test_capped_ram_tier_evicts_an_unused_replica(ram_root, pool, template, virsh):
    """3a. copy replicas in a RAM tier capped at 40M: an unused replica is
    evicted to make room."""
    p, cap_tier = capped_pool(pool, template, virsh, ram_root)
    create_instance(virsh, p, "i1.qcow2", "t1.qcow2")
    r1 = backing_of(p.path("i1.qcow2"))
    assert r1.startswith(cap_tier + "/"), r1
    # the instance goes behind libvirt's back: its replica is unused now
    os.unlink(p.path("i1.qcow2"))
    create_instance(virsh, p, "i2.qcow2", "t2.qcow2")
    assert not os.path.exists(r1), "unused replica not evicted"
    virsh("pool-refresh", p.name)
    assert ram_status(virsh, p)["allocation"] <= 40 * MiB


def test_replica_over_the_cap_is_refused(ram_root, pool, template, virsh):
    """3b. a replica that cannot fit under the cap is refused, nothing is
    made."""
    p, _ = capped_pool(pool, template, virsh, ram_root)
    evict_for_second_replica(virsh, p)
    with refused(NO_SPACE, "is capped at 40.0 MiB"):
        p.create_volume("i3.qcow2", 64 * MiB, backing_vol="t1.qcow2")
    assert not os.path.exists(p.path("i3.qcow2"))
    assert ram_status(virsh, p)["allocation"] <= 40 * MiB


# ---- 4. kill -9 while a hot replica is made -------------------------------------

@pytest.mark.disruptive
def test_kill_storaged_while_a_hot_replica_is_made(pool, template, virsh, daemons, children):
    """4. kill -9 virtstoraged while the pool makes a hot replica: only a
    temporary file, removed at the next start; never a partial replica."""
    p = pool(replica="policy='hot'", autostart=True)
    template(p.template_path("big.qcow2"), 512 * MiB, [(0x55, 0, BIG_READ)])
    virsh("pool-refresh", p.name)
    create_instance(virsh, p, "learner.qcow2", "big.qcow2", 512 * MiB)
    boot_with_copy_on_read(p.path("learner.qcow2"), [(0, BIG_READ)])
    # the refresh's background work learns the hot set and makes the hot
    # replica, which the vol-create waits for
    virsh("pool-refresh", p.name, wait=False)
    rdir = os.path.join(p.secondary, REPLICAS, "big.qcow2")
    proc = children.start("vol-create-as", p.name, "victim.qcow2", str(512 * MiB),
                          "--format", "qcow2", "--backing-vol", "big.qcow2",
                          "--backing-vol-format", "qcow2")
    tmp = wait_for(lambda: tmp_files(rdir), 60, "the hot replica's temporary file",
                   interval=0.005)
    tmp = os.path.join(rdir, tmp[0])
    pid = daemons.storaged_pid()
    try:
        os.kill(pid, 9)
        proc.communicate(timeout=30)
        wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10, "virtstoraged to die")
        assert os.path.exists(tmp), "temporary file vanished before the restart"
        final = [f for f in listdir(rdir) if not f.startswith(TMP_PREFIX)]
        assert final == [], "a replica under its final name after the kill: %s" % final
    finally:
        daemons.start()
    wait_for(lambda: pool_running(p.name), 30, "the autostarted pool to run again")
    wait_for(lambda: not os.path.exists(tmp), 60, "the temporary file to go after the restart")
    # the refresh at start knows the hot set and makes the replica again
    sets = hot_sets(p.secondary, "big.qcow2")
    assert len(sets) == 1, sets
    replica = os.path.join(rdir, sets[0])
    wait_for(lambda: os.path.exists(replica), 120, "the hot replica to be made again")
    assert own_data_bytes(replica) == BIG_READ
    run(["qemu-img", "check", "-q", "-U", replica])
    wait_for(lambda: tmp_files(rdir) == [], 60, "no temporary file")
