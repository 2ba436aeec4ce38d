"""One template store, three hosts: what one host adds, every host lists,
and every eager host prepares its own replica of."""

import os

from cluster import HOSTS, image_info

REPLICAS = ".stormpool-replicas"


def test_template_added_on_one_host_listed_by_all(lab):
    lab = lab()
    lab.template("hosta", "win10.qcow2")
    lab.template("hosta", "base.img")
    for host in HOSTS[1:]:
        assert lab.names(host) == []
        lab.refresh(host)
    assert {h: lab.names(h) for h in HOSTS} == {h: ["base.img", "win10.qcow2"] for h in HOSTS}


def test_eager_pools_each_prepare_their_own_replica(lab, hosts):
    """prepare='eager': a template added on one host is copied by every
    host into its own tier at its next refresh, before any instance."""
    lab = lab("policy='copy' prepare='eager'")
    lab.template("hosta", "win10.qcow2")
    for host in HOSTS:
        lab.refresh(host)
    for host in HOSTS:
        replicas = os.path.join(REPLICAS, "win10.qcow2")
        made = os.listdir(hosts[host].ssd(lab.name, replicas))
        assert len(made) == 1 and not made[0].startswith("."), (host, made)
        # the host's first instance backs onto that copy, in its own tier
        instance = lab.instance(host, "first.qcow2", "win10.qcow2").path()
        info = image_info(hosts[host], instance)
        assert info["backing-filename"] == os.path.join(lab.secondary, replicas, made[0]), \
            (host, info)
