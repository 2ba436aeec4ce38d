"""One template store, three hosts: what one host adds, every host lists."""

from conftest import HOSTS


def test_template_added_on_one_host_listed_by_all(lab):
    lab = lab()
    lab.template("hosta", "win10.qcow2")
    lab.template("hosta", "base.img")
    for host in HOSTS[1:]:
        assert lab.names(host) == []
        lab.refresh(host)
    assert {h: lab.names(h) for h in HOSTS} == {h: ["base.img", "win10.qcow2"] for h in HOSTS}
