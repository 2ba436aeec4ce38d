"""A template changed behind libvirt's back, on one host: every host
reports it at its next refresh, naming its own instances at risk."""

import re

import pytest

from cluster import HOSTS

REPORT = re.compile(r"^\S+ \S+ \d+: error : \S+ : (template '.*' changed behind libvirt's "
                    r"back.*)$", re.M)


@pytest.mark.time_limit(300)
def test_changed_template_reported_by_every_host(lab, hosts):
    lab = lab("policy='none'")
    lab.template("hosta", "win10.qcow2")
    for host in HOSTS:
        lab.refresh(host)
        lab.instance(host, "%s-pc01.qcow2" % host, "win10.qcow2")
        lab.refresh(host)           # the template's stamp, as every host saw it
    offsets = {h: hosts[h].log_size() for h in HOSTS}
    path = lab.primary + "/win10.qcow2"
    hosts["hostb"].sh("qemu-io", "-f", "qcow2", "-c", "write -q -P 0x5a 0 64k", path)
    for host in HOSTS:
        lab.refresh(host)
    for host in HOSTS:
        assert REPORT.findall(hosts[host].log_since(offsets[host])) == [
            "template '%s' changed behind libvirt's back while 1 instance(s) depend on "
            "it directly; their data is at risk: %s-pc01.qcow2" % (path, host)], host
    # reported once: the next refresh knows the new stamp
    offsets = {h: hosts[h].log_size() for h in HOSTS}
    for host in HOSTS:
        lab.refresh(host)
        assert REPORT.findall(hosts[host].log_since(offsets[host])) == [], host
