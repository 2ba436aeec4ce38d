"""A host killed in the middle of making instances: what it half made
never lets another host delete the template, and once started again it
counts exactly what its disks hold."""

import os
import random
import re
import threading
import time

import libvirt
import pytest

from cluster import MiB, TMP_PREFIX, volume_xml
from test_protection import REFUSED, change

ROUNDS = 5


def create_until_killed(lab, hosts, host, prefix, made):
    """Instances in a loop until @host's daemon dies under the call."""
    conn = hosts[host].connect()
    pool = conn.storagePoolLookupByName(lab.name)
    backing = pool.storageVolLookupByName("win10.qcow2").path()
    n = 0
    try:
        while True:
            name = "%s-%03d.qcow2" % (prefix, n)
            pool.createXML(volume_xml(name, 64 * MiB, backing), 0)
            made.append(name)
            n += 1
    except libvirt.libvirtError:
        pass                    # the daemon is gone
    finally:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


def counted(text, host):
    m = re.search(r"\b%s \((\d+)\)" % host, text or "")
    return int(m.group(1)) if m else 0


@pytest.mark.time_limit(600)
def test_host_killed_mid_create(lab, hosts):
    lab = lab("policy='none'")
    lab.template("hosta", "win10.qcow2")
    for host in ("hostb", "hostc"):
        lab.refresh(host)
    rng = random.Random(1)
    for r in range(ROUNDS):
        made = []
        thread = threading.Thread(target=create_until_killed,
                                  args=(lab, hosts, "hostb", "r%d" % r, made))
        thread.start()
        time.sleep(rng.uniform(0.5, 1.5))
        hosts["hostb"].kill()
        thread.join()
        files = lab.instance_files("hostb")
        assert set(made) <= set(files)
        # whatever hostb was writing when it died, its record counts at
        # least every instance its disk holds: the template stays
        for host in ("hosta", "hostc"):
            refusal = change(lab, host, "delete", "win10.qcow2")
            assert counted(refusal, "hostb") >= len(files), (refusal, files)
        # what the kill interrupted: a claim counted (the record says more
        # than the disk holds), a temporary file, or nothing
        print("round %d: %d instances on disk, %d counted, %d temporary files" % (
            r, len(files), counted(refusal, "hostb"),
            len([f for f in os.listdir(hosts["hostb"].ssd(lab.name))
                 if f.startswith(TMP_PREFIX)])))
        hosts["hostb"].start()
        if not lab.pool("hostb").isActive():
            lab.start("hostb")
        lab.refresh("hostb")
        assert [f for f in os.listdir(hosts["hostb"].ssd(lab.name))
                if f.startswith(TMP_PREFIX)] == []
        assert lab.instance_files("hostb") == files
        assert change(lab, "hostc", "delete", "win10.qcow2") == (
            REFUSED + "cannot delete template 'win10.qcow2': instances of other pools "
            "depend on it: hostb (%d)" % len(files))
    for name in lab.instance_files("hostb"):
        lab.vol("hostb", name).delete(0)
    assert change(lab, "hostc", "delete", "win10.qcow2") is None
