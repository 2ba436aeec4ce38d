"""One learning boot for the whole lab: a hot set learned on one host is
published in the template store, and every other host builds its own hot
replica from it, in its own tier, without a learning boot of its own."""

import os

from cluster import HOSTS, MiB, assert_pattern, image_info, own_data_bytes

HOT_SETS = ".stormpool-hot-sets"
REPLICAS = ".stormpool-replicas"
# The template: 64 MiB, data in two places; the "boot" reads 4 MiB of the
# first and 2 MiB of the second (what QEMU's copy_on_read='on' leaves in
# the learner's overlay, done here with qemu-io -C as tests/integration do).
WRITES = [(0x11, 0, 8 * MiB), (0x22, 32 * MiB, 8 * MiB)]
READS = [(0, 4 * MiB), (32 * MiB, 2 * MiB)]
HOT_BYTES = 6 * MiB


def qemu_io(host, image, *commands, cor=False):
    argv = ["qemu-io", "-f", "qcow2"] + (["-C"] if cor else [])
    for c in commands:
        argv += ["-c", c]
    host.sh(*(argv + [image]))


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def learned_on_hosta(lab, hosts):
    """t.qcow2 in the store, learned from one copy-on-read boot on hosta.
    Returns the names of the published hot sets."""
    a = hosts["hosta"]
    t = os.path.join(lab.primary, "t.qcow2")
    a.sh("qemu-img", "create", "-q", "-f", "qcow2", t, str(64 * MiB))
    qemu_io(a, t, *["write -q -P %d %d %d" % w for w in WRITES])
    for host in HOSTS:
        lab.refresh(host)
    learner = lab.instance("hosta", "learner.qcow2", "t.qcow2").path()
    qemu_io(a, learner, *["read -q %d %d" % r for r in READS], cor=True)
    lab.refresh("hosta")
    published = a.sh("ls", os.path.join(lab.primary, HOT_SETS, "t.qcow2"))[1].split()
    assert len(published) == 1, published
    return published


def test_hot_set_learned_on_one_host_used_by_all(lab, hosts):
    lab = lab("policy='hot'")
    learned_on_hosta(lab, hosts)
    for host in HOSTS[1:]:
        h = hosts[host]
        # nothing was booted here: no instance, no hot set of its own yet
        assert lab.instance_files(host) == []
        lab.refresh(host)
        sets = listdir(h.ssd(lab.name, HOT_SETS, "t.qcow2"))
        assert len(sets) == 1, (host, sets)
        replica = os.path.join(lab.secondary, REPLICAS, "t.qcow2", sets[0])
        assert os.path.exists(h.ssd(lab.name, REPLICAS, "t.qcow2", sets[0])), host
        assert own_data_bytes(h, replica) == HOT_BYTES, host
        # the host's first instance backs onto its own hot replica
        instance = lab.instance(host, "first.qcow2", "t.qcow2").path()
        info = image_info(h, instance)
        assert info["backing-filename"] == replica, (host, info)
        for pattern, offset, length in WRITES + [(0, 48 * MiB, MiB)]:
            assert_pattern(h, instance, pattern, offset, length)
