"""A desktop moves between two hosts sharing the template store, as
`virsh migrate --live --persistent --undefinesource --copy-storage-inc
--migrate-disks vda GUEST URI` moves it: the destination's pool pre-creates
the instance on its own replica of the template (libvirt patch 0010), QEMU
mirrors only the instance's own clusters, and the template is protected by
the desktop where it now runs. A migration that fails leaves the guest
running on the source with its instance intact, and no instance on the
destination (libvirt patch 0011)."""

import os
import threading
import time

import libvirt
import pytest

from cluster import (NET, MiB, assert_pattern, guest_xml, image_info, message, migrate,
                     own_data_bytes, qemu_conn)

# virsh migrate --live --persistent --undefinesource --copy-storage-all
MIGRATE_ALL = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST |
               libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_NON_SHARED_DISK)

REPLICAS = ".stormpool-replicas"
# The template: 64 MiB, 16 MiB of data; the desktop's own data: 8 MiB.
TEMPLATE_DATA = (0x11, 0, 16 * MiB)
OWN_DATA = (0x5a, 32 * MiB, 8 * MiB)


@pytest.fixture
def desktop(lab, hosts):
    """The lab (policy='copy': each host its own replica), a template in
    the store and the desktop 'desk' running on hosta on its instance
    'desk.qcow2', which holds 8 MiB of its own. Yields (lab, domain name);
    the guest is destroyed and undefined on every host at the end."""
    lab = lab("policy='copy'")
    a = hosts["hosta"]
    template = os.path.join(lab.primary, "win10.qcow2")
    a.sh("qemu-img", "create", "-q", "-f", "qcow2", template, str(64 * MiB))
    a.sh("qemu-io", "-f", "qcow2", "-c", "write -q -P %d %d %d" % TEMPLATE_DATA, template)
    for host in hosts:
        lab.refresh(host)
    instance = lab.instance("hosta", "desk.qcow2", "win10.qcow2").path()
    a.sh("qemu-io", "-f", "qcow2", "-c", "write -q -P %d %d %d" % OWN_DATA, instance)
    conn = qemu_conn(hosts, "hosta")
    dom = conn.defineXML(guest_xml("desk", lab.name, "desk.qcow2"))
    dom.create()
    conn.close()
    yield lab, "desk"
    for host in hosts:
        c = qemu_conn(hosts, host)
        try:
            d = c.lookupByName("desk")
            if d.isActive():
                d.destroy()
            if d.isPersistent():
                d.undefine()
        except libvirt.libvirtError:
            pass
        c.close()


def test_desktop_moves_with_its_own_data_only(desktop, hosts):
    lab, name = desktop
    a, b = hosts["hosta"], hosts["hostb"]
    instance = os.path.join(lab.secondary, "desk.qcow2")
    own = own_data_bytes(a, instance)
    started = time.monotonic()
    migrate(hosts, name, "hosta", "hostb")
    print("migrated in %.1f s, %d bytes of own data" % (time.monotonic() - started, own))
    # the guest runs on hostb, and is gone from hosta
    conn = qemu_conn(hosts, "hostb")
    assert conn.lookupByName(name).isActive()
    conn.close()
    conn = qemu_conn(hosts, "hosta")
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    conn.close()
    # hostb's instance backs onto hostb's own replica and holds only the
    # desktop's own data, all of it
    info = image_info(b, instance)
    replicas = os.listdir(b.ssd(lab.name, REPLICAS, "win10.qcow2"))
    assert info["backing-filename"] == os.path.join(
        lab.secondary, REPLICAS, "win10.qcow2", replicas[0]), info
    moved = own_data_bytes(b, instance)
    assert own <= moved <= 1.1 * own, (own, moved)
    assert_pattern(b, instance, *OWN_DATA)
    assert_pattern(b, instance, *TEMPLATE_DATA)
    # hostb's record counts the desktop: the template is protected by it
    lab.refresh("hostb")
    assert "template 1 win10.qcow2" in lab.record("hostb")


def test_failed_migration_leaves_nothing_on_the_destination(desktop, hosts):
    lab, name = desktop
    a = hosts["hosta"]
    instance = os.path.join(lab.secondary, "desk.qcow2")
    before = image_info(a, instance)
    # QEMU's migration stream goes to an address nobody listens on, after
    # the destination made the instance and started its QEMU
    with pytest.raises(libvirt.libvirtError) as refused:
        migrate(hosts, name, "hosta", "hostb", uri="tcp://%s.99" % NET)
    print("refused:", message(refused.value))
    conn = qemu_conn(hosts, "hosta")
    assert conn.lookupByName(name).isActive()
    conn.close()
    assert image_info(a, instance)["backing-filename"] == before["backing-filename"]
    assert_pattern(a, instance, *OWN_DATA)
    assert lab.instance_files("hostb") == []
    lab.refresh("hostb")
    assert "desk.qcow2" not in lab.names("hostb")


def test_destination_killed_mid_migration(desktop, hosts):
    """kill -9 of every daemon and QEMU of the destination while the disk
    is mirrored (1 MiB/s: 8 s for the 8 MiB): the migration fails, the
    guest runs on in the source with its instance intact. Restarted, the
    destination's virtqemud finds the incoming migration had not reached
    Finish and deletes the instance it had pre-created (libvirt patch
    0011, through the status XML)."""
    lab, name = desktop
    a, b = hosts["hosta"], hosts["hostb"]
    instance = os.path.join(lab.secondary, "desk.qcow2")
    failure = []

    def move():
        try:
            migrate(hosts, name, "hosta", "hostb", bandwidth=1)
        except libvirt.libvirtError as e:
            failure.append(message(e))
    mover = threading.Thread(target=move)
    mover.start()
    deadline = time.monotonic() + 60
    while not lab.instance_files("hostb") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)
    assert lab.instance_files("hostb") == ["desk.qcow2"]
    b.kill()
    mover.join(120)
    assert not mover.is_alive()
    print("the migration failed with:", failure)
    assert failure, "the migration succeeded although its destination died"
    conn = qemu_conn(hosts, "hosta")
    assert conn.lookupByName(name).isActive()
    conn.close()
    assert_pattern(a, instance, *OWN_DATA)
    assert_pattern(a, instance, *TEMPLATE_DATA)
    assert own_data_bytes(a, instance) == OWN_DATA[2]
    b.start()
    deadline = time.monotonic() + 60
    while lab.instance_files("hostb") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.instance_files("hostb") == []
    if lab.pool("hostb").isActive():
        lab.refresh("hostb")
    else:
        lab.start("hostb")
    assert lab.names("hostb") == ["win10.qcow2"]
    conn = qemu_conn(hosts, "hostb")
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    conn.close()


def test_copy_storage_all_is_refused_with_the_way_to_move(desktop, hosts):
    """--copy-storage-all asks the destination's pool for a volume without
    a backing file, which would be a template in the shared tier: refused,
    naming --copy-storage-inc; the guest runs on, nothing is made."""
    lab, name = desktop
    a = hosts["hosta"]
    instance = os.path.join(lab.secondary, "desk.qcow2")
    with pytest.raises(libvirt.libvirtError) as refused:
        migrate(hosts, name, "hosta", "hostb", flags=MIGRATE_ALL)
    assert message(refused.value) == (
        "invalid argument: stormpool volumes cannot have preallocated metadata: an instance "
        "is a thin qcow2 overlay of its template, and a template gets its data from "
        "vol-upload or vol-create-from (a desktop moves to another host with migrate "
        "--copy-storage-inc, not --copy-storage-all)")
    conn = qemu_conn(hosts, "hosta")
    assert conn.lookupByName(name).isActive()
    conn.close()
    assert_pattern(a, instance, *OWN_DATA)
    assert lab.instance_files("hostb") == []
    lab.refresh("hostb")
    assert lab.names("hostb") == ["win10.qcow2"]


def test_shut_off_desktop_moves_started_paused(desktop, hosts):
    """The documented move of a shut-off desktop (stormpool(7)): started
    paused, so that its CPUs never run, moved like a running one, and shut
    off again on the destination, where it stays defined with only its own
    data moved."""
    lab, name = desktop
    b = hosts["hostb"]
    conn = qemu_conn(hosts, "hosta")
    dom = conn.lookupByName(name)
    dom.destroy()
    dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    conn.close()
    migrate(hosts, name, "hosta", "hostb")
    conn = qemu_conn(hosts, "hostb")
    dom = conn.lookupByName(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    dom.destroy()
    assert dom.isPersistent() and not dom.isActive()
    conn.close()
    instance = os.path.join(lab.secondary, "desk.qcow2")
    assert own_data_bytes(b, instance) == OWN_DATA[2]
    assert_pattern(b, instance, *OWN_DATA)
    assert_pattern(b, instance, *TEMPLATE_DATA)
    conn = qemu_conn(hosts, "hosta")
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    conn.close()
