"""Two hosts make instances while a third deletes templates, at once:
never a lost backing file, and every host's record ends up exact."""

import random
import re
import struct
import threading
import time

import libvirt
import pytest

from cluster import MiB, volume_xml

ROUNDS = 30
CREATORS = ("hostb", "hostc")


def backing_file(path):
    """The backing file name written in the qcow2 header at @path."""
    with open(path, "rb") as f:
        header = f.read(4096)
    assert header[:4] == b"QFI\xfb", path
    offset, size = struct.unpack(">QI", header[8:20])
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size).decode()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = {}
        self.crashes = []

    def thread(self, target, *args):
        """A thread running @target; what it raises is kept in crashes."""
        def run():
            try:
                target(*args)
            except Exception as e:      # noqa: BLE001 - reported by the test
                with self.lock:
                    self.crashes.append("%s: %r" % (target.__name__, e))
        return threading.Thread(target=run)

    def add(self, what, error=None):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1
            if error:
                self.errors.setdefault(what, set()).add(error)


def templates_of(pool):
    return sorted(n for n in pool.listVolumes() if n.startswith("gen"))


def delete_templates(lab, hosts, stop, tally):
    """hosta: a new template each round, then tries to delete every
    older one."""
    conn = hosts["hosta"].connect()
    try:
        pool = conn.storagePoolLookupByName(lab.name)
        for r in range(ROUNDS):
            pool.createXML(volume_xml("gen%03d.qcow2" % r, 64 * MiB), 0)
            time.sleep(0.1)
            pool.refresh(0)
            for name in templates_of(pool)[:-1]:
                try:
                    pool.storageVolLookupByName(name).delete(0)
                    tally.add("template deleted")
                except libvirt.libvirtError as e:
                    tally.add("template delete refused",
                              re.sub(r"'gen\d+\.qcow2'", "'genN'", e.get_error_message()))
    finally:
        stop.set()
        conn.close()


def make_instances(lab, hosts, host, stop, tally):
    """@host: instances of the templates it lists (the oldest, the one
    most likely being deleted, half of the time), and now and then
    deletes one of its own. It refreshes one time in three: an instance
    of a template hosta has just deleted is tried too."""
    conn = hosts[host].connect()
    rng = random.Random(host)
    mine = []
    try:
        pool = conn.storagePoolLookupByName(lab.name)
        n = 0
        while not stop.is_set():
            if rng.random() < 0.3:
                pool.refresh(0)
            names = templates_of(pool)
            if not names:
                continue
            template = names[0] if rng.random() < 0.5 else rng.choice(names)
            name = "%s-%04d.qcow2" % (host, n)
            n += 1
            try:
                backing = pool.storageVolLookupByName(template).path()
                pool.createXML(volume_xml(name, 64 * MiB, backing), 0)
                mine.append(name)
                tally.add("instance created")
            except libvirt.libvirtError as e:
                tally.add("instance refused", e.get_error_message())
            if mine and rng.random() < 0.5:
                victim = mine.pop(rng.randrange(len(mine)))
                pool.storageVolLookupByName(victim).delete(0)
                tally.add("instance deleted")
    finally:
        conn.close()


def record_counts(text):
    counts = {}
    for line in text.splitlines():
        if line.startswith("template "):
            _, count, name = line.split(" ", 2)
            counts[name] = int(count)
    return counts


@pytest.mark.time_limit(600)
def test_two_hosts_create_while_third_deletes(lab, hosts):
    lab = lab("policy='none'")
    stop = threading.Event()
    tally = Tally()
    threads = [tally.thread(delete_templates, lab, hosts, stop, tally)]
    threads += [tally.thread(make_instances, lab, hosts, h, stop, tally) for h in CREATORS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("race:", tally.counts)
    print("errors:", tally.errors)
    assert tally.crashes == []
    # the race was one: templates deleted, deletes refused, instances made
    # and instances refused because their template went
    for what in ("template deleted", "template delete refused", "instance created"):
        assert tally.counts.get(what, 0) >= 5, (what, tally.counts)
    # 0 lost backing files: every instance's template is still there
    present = set(hosts["hosta"].sh("ls", lab.primary)[1].split())
    lost = []
    for host in CREATORS:
        for name in lab.instance_files(host):
            backing = backing_file(hosts[host].ssd(lab.name, name))
            if backing.rsplit("/", 1)[1] not in present or \
               not backing.startswith(lab.primary + "/"):
                lost.append((host, name, backing))
    assert lost == []
    # each host's record counts exactly what its tier holds
    for host in CREATORS:
        lab.refresh(host)
        have = {}
        for name in lab.instance_files(host):
            template = backing_file(hosts[host].ssd(lab.name, name)).rsplit("/", 1)[1]
            have[template] = have.get(template, 0) + 1
        assert record_counts(lab.record(host)) == have, host
    # and once the instances are gone, every template goes
    for host in CREATORS:
        for name in lab.instance_files(host):
            lab.vol(host, name).delete(0)
    lab.refresh("hosta")
    for name in templates_of(lab.pool("hosta")):
        lab.vol("hosta", name).delete(0)
