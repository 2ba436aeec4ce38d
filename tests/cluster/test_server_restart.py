"""The GlusterFS server killed and started again while two hosts make
instances: each call succeeds or fails with a clear error, nothing that
succeeded is lost, and the hosts work again once the server is back."""

import re
import threading
import time

import libvirt
import pytest

from cluster import CLUSTER_ENV, MiB, run, volume_xml
from test_protection import REFUSED, change
from test_race import backing_file

WORKERS = ("hostb", "hostc")
# What the FUSE client answers while its server is away: a call names the
# file of the store it failed on, and one of these.
FS_ERRORS = ("Transport endpoint is not connected", "Input/output error")


def work(lab, hosts, host, stop, made, failures):
    """@host: refresh and a new instance, in a loop until @stop."""
    conn = hosts[host].connect()
    n = 0
    try:
        pool = conn.storagePoolLookupByName(lab.name)
        backing = pool.storageVolLookupByName("win10.qcow2").path()
        while not stop.is_set():
            name = "%s-%03d.qcow2" % (host, n)
            n += 1
            try:
                pool.refresh(0)
                pool.createXML(volume_xml(name, 64 * MiB, backing), 0)
                made.append(name)
            except libvirt.libvirtError as e:
                failures.append(e.get_error_message())
                time.sleep(0.2)
    finally:
        conn.close()


@pytest.mark.time_limit(600)
def test_server_restarted_while_hosts_work(lab, hosts):
    lab = lab("policy='none'")
    lab.template("hosta", "win10.qcow2")
    for host in WORKERS:
        lab.refresh(host)
    stop = threading.Event()
    made = {h: [] for h in WORKERS}
    failures = {h: [] for h in WORKERS}
    threads = [threading.Thread(target=work, args=(lab, hosts, h, stop, made[h], failures[h]))
               for h in WORKERS]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        run([CLUSTER_ENV, "server-kill"])
        time.sleep(3)
        run([CLUSTER_ENV, "server-start"])
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print("made:", {h: len(made[h]) for h in WORKERS})
    print("failures:", {h: sorted(set(f)) for h, f in failures.items()})
    # the outage was one: calls failed, and every failure says why (a
    # refresh that fails makes libvirt stop the pool, as for any pool)
    assert sum(len(f) for f in failures.values()) > 0
    inactive = "Requested operation is not valid: storage pool '%s' is not active" % lab.name
    # "cannot open the hosts' lock '/srv/lab/...': ...": the prefix may
    # hold an apostrophe of its own, the file is the quoted path; "cannot
    # open directory '/srv/lab/...' to create '/srv/lab/...': ...": the
    # directory, then the file
    store_file = r"'(%s[^']*|win10\.qcow2)'" % re.escape(lab.primary)
    unreachable = re.compile(r"cannot [a-z' ]*?%s( to [a-z]+ %s)?(: [^']*)?: (%s)" % (
        store_file, store_file, "|".join(FS_ERRORS)))
    for host in WORKERS:
        for text in failures[host]:
            assert text == inactive or unreachable.fullmatch(text), text
    # nothing that succeeded is lost, and every instance has its template
    for host in WORKERS:
        files = lab.instance_files(host)
        assert set(made[host]) <= set(files), host
        for name in files:
            assert backing_file(hosts[host].ssd(lab.name, name)) == \
                lab.primary + "/win10.qcow2"
    # the hosts work again, and protect their instances from every host
    for host in WORKERS:
        if not lab.pool(host).isActive():
            lab.start(host)
        lab.refresh(host)
        lab.instance(host, "%s-after.qcow2" % host, "win10.qcow2")
    assert change(lab, "hosta", "delete", "win10.qcow2") == (
        REFUSED + "cannot delete template 'win10.qcow2': instances of other pools "
        "depend on it: hostb (%d), hostc (%d)" % tuple(len(lab.instance_files(h))
                                                       for h in WORKERS))
