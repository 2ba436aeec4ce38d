"""Fixtures of the cluster suite: three hosts sharing a template store.

tools/cluster-env makes the hosts (hosta, hostb, hostc: namespaces with
their own host name, machine id, network, private libvirt daemons and
local tier /srv/lab/ssd) and the store (a GlusterFS volume served by a
glusterd of its own, FUSE-mounted by every host at /srv/lab/templates).
Run the suite, or one test, through it:

    tools/cluster-env pytest -v tests/cluster
    tools/cluster-env pytest -v tests/cluster/test_protection.py -k dead

Each test defines its own pool, named after it, on every host (the
`lab` fixture): its templates in /srv/lab/templates/NAME, each host's
instances in /srv/lab/ssd/NAME. The tests talk to each host's
virtstoraged through its socket (python3-libvirt), run commands inside a
host with `Host.sh`, and read a host's local files and logs from outside
(the host's directories under CLUSTER_STATE). Whatever a test made is
removed when it ends; a host it killed is started again.
"""

import faulthandler
import os
import re
import sys

import libvirt
import pytest

from cluster import cluster_hosts, define_lab

DEFAULT_TIME_LIMIT = 300


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): the test's time bound")
    libvirt.registerErrorHandler(lambda ctx, err: None, None)


@pytest.fixture(scope="session")
def hosts():
    """{name: Host} of the running cluster (tools/cluster-env pytest made
    it, or makes it now)."""
    if not os.environ.get("CLUSTER_STATE"):
        pytest.fail("run the cluster tests under tools/cluster-env pytest", pytrace=False)
    return cluster_hosts()


@pytest.fixture(autouse=True)
def time_limit(request):
    """Past the test's time bound, every thread's traceback and exit 1: a
    call into a hung daemon (or a hung FUSE mount) never returns."""
    marker = request.node.get_closest_marker("time_limit")
    faulthandler.dump_traceback_later(marker.args[0] if marker else DEFAULT_TIME_LIMIT,
                                      exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


def short_name(request):
    return "spc-" + re.sub(r"[^A-Za-z0-9]+", "-",
                           request.node.name.replace("test_", "", 1))[:40].strip("-")


@pytest.fixture
def lab(request, hosts):
    """lab(replica=None) -> Lab: the pool spc-<test> defined, built and
    started on every host (@replica: the attributes of
    <stormpool:replica>, such as "policy='none'"); removed at the end
    with its directories, after any host the test killed is started
    again."""
    made = []

    def make(replica=None):
        lab = define_lab(short_name(request), hosts, replica)
        made.append(lab)
        return lab
    yield make
    for lab in made:
        lab.remove()

