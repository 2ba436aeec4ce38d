"""A template another host's instances depend on is protected from every
host: delete, wipe, resize and upload are refused, naming the hosts and
their counts, also while a host is down, until an admin forgets it."""

import libvirt
import pytest

from cluster import MiB, message

REFUSED = "Requested operation is not valid: "


def change(lab, host, op, name):
    """@op ('delete', 'wipe', 'resize', 'upload') of the volume @name on
    @host: None if done, else the error message."""
    vol = lab.vol(host, name)
    stream = None
    try:
        if op == "delete":
            vol.delete(0)
        elif op == "wipe":
            vol.wipe(0)
        elif op == "resize":
            vol.resize(128 * MiB, 0)
        else:
            stream = lab.conn(host).newStream(0)
            vol.upload(stream, 0, 1 * MiB, 0)
        return None
    except libvirt.libvirtError as e:
        return message(e)
    finally:
        if stream is not None:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass


VERBS = {"delete": "delete", "wipe": "wipe", "resize": "resize"}


def refusal(op, others):
    """The whole message refusing @op of win10.qcow2 on a host without
    instances of its own, @others naming the other hosts ("hostb (3)").
    An upload publishes a new version (stormpool(7), TEMPLATE VERSIONS)
    unless another host counts images that name the template's file
    itself, as a new instance counts until its host's next refresh."""
    if op == "upload":
        return (REFUSED + "cannot upload a new version of template 'win10.qcow2': images "
                "of other pools name its file itself (%s), which must keep its contents"
                % others)
    return (REFUSED + "cannot %s template 'win10.qcow2': instances of other pools "
            "depend on it: %s" % (VERBS[op], others))


def test_other_hosts_instances_protect_template(lab):
    lab = lab()
    lab.template("hosta", "win10.qcow2")
    lab.refresh("hostb")
    for i in range(3):
        lab.instance("hostb", "pc%02d.qcow2" % i, "win10.qcow2")
    lab.refresh("hostc")
    for host in ("hosta", "hostc"):
        for op in ("delete", "wipe", "resize", "upload"):
            assert change(lab, host, op, "win10.qcow2") == refusal(op, "hostb (3)"), \
                (host, op)
    lab.instance("hostc", "c01.qcow2", "win10.qcow2")
    assert change(lab, "hosta", "delete", "win10.qcow2") == (
        REFUSED + "cannot delete template 'win10.qcow2': instances of other pools "
        "depend on it: hostb (3), hostc (1)")
    lab.instance("hosta", "a01.qcow2", "win10.qcow2")
    assert change(lab, "hostc", "delete", "win10.qcow2") == (
        REFUSED + "cannot delete template 'win10.qcow2': 1 instance(s) depend on it: "
        "c01.qcow2; and of other pools: hosta (1), hostb (3)")
    # Once the others' instances are gone, the template goes.
    for host, names in (("hosta", ["a01.qcow2"]), ("hostb", ["pc00.qcow2", "pc01.qcow2",
                                                               "pc02.qcow2"]),
                        ("hostc", ["c01.qcow2"])):
        for name in names:
            lab.vol(host, name).delete(0)
    assert change(lab, "hostc", "delete", "win10.qcow2") is None
    lab.refresh("hosta")
    assert lab.names("hosta") == []


@pytest.mark.time_limit(300)
def test_dead_host_protects_until_forgotten(lab, hosts):
    lab = lab()
    lab.template("hosta", "win10.qcow2")
    lab.refresh("hostb")
    lab.refresh("hostc")
    lab.instance("hostb", "pc01.qcow2", "win10.qcow2")
    lab.instance("hostb", "pc02.qcow2", "win10.qcow2")
    hosts["hostb"].kill()       # and it never comes back
    for host in ("hosta", "hostc"):
        for op in ("delete", "wipe", "resize", "upload"):
            assert change(lab, host, op, "win10.qcow2") == refusal(op, "hostb (2)")
    # stormpool(7): the admin forgets the host by removing its record
    hosts["hosta"].sh("sh", "-c", 'rm "$1"/.stormpool-hosts/hostb.*', "sh", lab.primary)
    assert change(lab, "hostc", "delete", "win10.qcow2") is None
