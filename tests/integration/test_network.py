"""The private daemons' network: the README's virt-install command as written.

tools/virt-env runs virtnetworkd with the other daemons, all in a network
namespace of their own, so that the network 'default' that libvirt installs
(virbr0, 192.168.122.0/24, DHCP by dnsmasq) works as on a real host while the
host's own interfaces, routes and firewall stay untouched. Checked, one
scenario per test:

  * the daemons run in that namespace, not in the host's;
  * 'default' is active and autostarted, its bridge and dnsmasq live there;
  * dnsmasq hands out an address on the bridge (a DHCP DISCOVER from a veth
    in a namespace of the test's own gets an OFFER from 192.168.122.0/24);
  * virt-install --network network=default --disk vol=POOL/VOL (the README's
    command) starts a guest on a stormpool instance, its tap on virbr0 in the
    daemons' namespace and none of it in the host's, its VNC server on a
    UNIX socket that a viewer on the host reaches;
  * tools/virt-env stop leaves no dnsmasq, no namespace; start brings the
    autostarted network back, as a boot does; daemons found outside the
    namespace (it was removed behind their back) are restarted into a new
    one.

The guest, its pool (spt-*), the test's namespace and veth and the
directories are removed at the end of their test even when it fails. Run
alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_network.py -k dnsmasq

The tests marked disruptive stop the shared daemons or remove their
namespace.
"""

import hashlib
import os
import re
import socket
import subprocess
import textwrap

import pytest

import stormpool_client as sp
from stormpool_client import run, wait_for

VIRT_ENV = os.path.join(sp.TOP, "tools", "virt-env")
DAEMONS = ["virtsecretd", "virtnetworkd", "virtstoraged", "virtqemud"]


# ---- the daemons' namespace --------------------------------------------------------

@pytest.fixture
def netns(prefix):
    """The name of the daemons' network namespace (tools/virt-env's)."""
    return "stormpool-" + hashlib.sha256(prefix.encode()).hexdigest()[:12]


def netns_inode(path):
    return os.stat(path).st_ino


def daemon_pid(daemon):
    with open(os.path.join(sp.prefix(), "var", "run", daemon + ".pid")) as f:
        return int(f.read().strip())


def in_netns(netns, argv, check=True):
    return run(["ip", "netns", "exec", netns] + argv, check=check)[1]


def our_dnsmasq_pids():
    marker = os.path.join(sp.prefix(), "var", "lib", "libvirt", "dnsmasq") + "/"
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() != "dnsmasq":
                    continue
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def parent_pid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def net_info(name):
    info = {}
    for line in sp.virsh("net-info", name).splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def assert_network_up(netns):
    info = net_info("default")
    assert info.get("Active") == "yes" and info.get("Autostart") == "yes", info
    assert info.get("Bridge") == "virbr0", info
    addr = in_netns(netns, ["ip", "-o", "-4", "addr", "show", "dev", "virbr0"])
    assert "192.168.122.1/24" in addr, addr
    # one dnsmasq (with its lease script helper, a child) per network
    with open(os.path.join(sp.prefix(), "var", "run", "libvirt", "network",
                           "default.pid")) as f:
        main = int(f.read().strip())
    pids = our_dnsmasq_pids()
    assert main in pids, (main, pids)
    assert all(p == main or parent_pid(p) == main for p in pids), (main, pids)
    for pid in pids:
        assert netns_inode("/proc/%d/ns/net" % pid) == netns_inode("/run/netns/" + netns), \
            "dnsmasq %d is not in the namespace %s" % (pid, netns)


def assert_daemons_in_netns(netns):
    want = netns_inode("/run/netns/" + netns)
    host = netns_inode("/proc/self/ns/net")
    assert want != host, "the namespace %s is the host's" % netns
    for daemon in DAEMONS:
        pid = daemon_pid(daemon)
        assert netns_inode("/proc/%d/ns/net" % pid) == want, \
            "%s (pid %d) is not in the namespace %s" % (daemon, pid, netns)


def test_daemons_run_in_a_namespace_of_their_own(netns):
    """The private daemons run in a network namespace of their own, not the
    host's; its bridge virbr0 has no twin in the host's namespace."""
    assert os.path.exists("/run/netns/" + netns), netns
    assert_daemons_in_netns(netns)
    # the bridge is in the namespace; the host's namespace has no interface
    # with its address (a virbr0 there would be another libvirt's)
    bridge = in_netns(netns, ["ip", "-o", "link", "show", "dev", "virbr0"])
    mac = re.search(r"link/ether ([0-9a-f:]{17})", bridge).group(1)
    assert mac not in run(["ip", "-o", "link"])[1], mac


def test_default_network_is_up_in_the_daemons_namespace(netns, virsh):
    """The network 'default' is active and autostarted, virbr0 has
    192.168.122.1/24 and its one dnsmasq runs in the daemons' namespace."""
    assert "default" in virsh("net-list", "--name").split()
    assert_network_up(netns)


# ---- DHCP on virbr0 ---------------------------------------------------------------

# A DHCP DISCOVER from a client namespace whose veth is a port of virbr0;
# prints the address dnsmasq offers.
DHCP_CLIENT = textwrap.dedent("""
    import os, random, socket, struct, sys
    iface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
    xid = random.getrandbits(32)
    msg = struct.pack("!BBBBIHH4s4s4s4s16s192s4s", 1, 1, 6, 0, xid, 0, 0x8000,
                      bytes(4), bytes(4), bytes(4), bytes(4), mac.ljust(16, b"\\0"),
                      bytes(192), b"\\x63\\x82\\x53\\x63")
    msg += bytes([53, 1, 1, 255])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind(("0.0.0.0", 68))
    s.settimeout(2)
    for attempt in range(10):
        s.sendto(msg, ("255.255.255.255", 67))
        try:
            while True:
                reply = s.recv(2048)
                if len(reply) >= 240 and struct.unpack("!I", reply[4:8])[0] == xid \\
                        and reply[0] == 2:
                    print(socket.inet_ntoa(reply[16:20]))
                    sys.exit(0)
        except socket.timeout:
            continue
    sys.exit("no DHCP offer")
    """)


@pytest.fixture
def dhcp_client(netns):
    """A namespace of the test's own whose veth is a port of virbr0 in the
    daemons' namespace: (command prefix to run in it, its interface, its
    MAC). The namespace and the veth are removed at the end."""
    client_ns = "spt-client-%d" % os.getpid()
    veth = "spt-veth%d" % (os.getpid() % 10000)
    peer = veth + "p"

    def remove():
        run(["ip", "netns", "exec", netns, "ip", "link", "del", veth], check=False)
        run(["ip", "netns", "del", client_ns], check=False)
    remove()
    try:
        run(["ip", "netns", "add", client_ns])
        in_netns(netns, ["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        in_netns(netns, ["ip", "link", "set", peer, "netns", client_ns])
        in_netns(netns, ["ip", "link", "set", veth, "master", "virbr0", "up"])
        client = ["ip", "netns", "exec", client_ns]
        run(client + ["ip", "link", "set", "lo", "up"])
        run(client + ["ip", "link", "set", peer, "up"])
        out = run(client + ["ip", "-o", "link", "show", "dev", peer])[1]
        mac = re.search(r"link/ether ([0-9a-f:]{17})", out).group(1)
        yield client, peer, mac
    finally:
        remove()
    assert not os.path.exists("/run/netns/" + client_ns)


def test_dnsmasq_offers_an_address_on_virbr0(dhcp_client):
    """dnsmasq of 'default' offers an address of 192.168.122.0/24 to a
    client on virbr0."""
    client, iface, mac = dhcp_client
    offered = run(client + ["/usr/bin/python3", "-c", DHCP_CLIENT, iface, mac])[1].strip()
    assert re.fullmatch(r"192\.168\.122\.(\d+)", offered), offered
    assert 2 <= int(offered.rsplit(".", 1)[1]) <= 254, offered


# ---- the README's virt-install ------------------------------------------------------

@pytest.fixture
def domain(request):
    """The name of the guest a test's virt-install defines: destroyed and
    undefined at its end, before its pool goes (list it after `pool`)."""
    name = "spt-%s" % re.sub(r"[^A-Za-z0-9]+", "-", request.node.name[5:])[:40].strip("-")
    sp.remove_domain(name)
    yield name
    sp.remove_domain(name)


def test_virt_install_on_a_pool_volume_with_network_default(netns, pool, domain, virsh):
    """The README's virt-install --network network=default --disk
    vol=POOL/VOL starts a guest on a stormpool instance: its tap is on
    virbr0 in the daemons' namespace only, its VNC server on a UNIX socket
    that a viewer on the host reaches."""
    p = pool()
    virsh("vol-create-as", p.name, "template.qcow2", "64M", "--format", "qcow2")
    virsh("vol-create-as", p.name, "pc01.qcow2", "64M", "--format", "qcow2",
          "--backing-vol", "template.qcow2", "--backing-vol-format", "qcow2")
    proc = subprocess.run(
        ["virt-install", "--name", domain, "--memory", "64", "--vcpus", "1", "--import",
         "--virt-type", "qemu",
         "--disk", "vol=%s/%s,bus=virtio,cache=none" % (p.name, "pc01.qcow2"),
         "--osinfo", "detect=on,require=off", "--network", "network=default",
         "--graphics", "vnc", "--noautoconsole"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout
    assert virsh("domstate", domain).strip() == "running"
    rows = [line.split() for line in virsh("domiflist", domain).splitlines()]
    assert len(rows) == 1, rows
    tap, kind, source, _model, mac = rows[0]
    assert (kind, source) == ("network", "default"), rows
    link = in_netns(netns, ["ip", "-o", "link", "show", "dev", tap])
    assert "master virbr0" in link, link
    # libvirt gives the tap the guest's MAC with fe: first; no interface of
    # the host's namespace has it
    tap_mac = "fe" + mac[2:]
    assert tap_mac in link, link
    assert tap_mac not in run(["ip", "-o", "link"])[1]
    # its VNC server listens on a UNIX socket a viewer on the host reaches
    xml = virsh("dumpxml", domain)
    sock = re.search(r"<listen type='socket' socket='([^']+)'", xml)
    assert sock, xml
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock.group(1))
        greeting = s.recv(12)
    assert greeting.startswith(b"RFB "), greeting


# ---- stop, start, and a namespace removed behind the daemons' back ---------------------

@pytest.mark.disruptive
def test_stop_leaves_nothing_and_start_brings_default_back(netns, daemons):
    """tools/virt-env stop leaves no dnsmasq and no namespace; start puts
    the daemons into the namespace again and brings 'default' back."""
    daemons.stop()
    assert not os.path.exists("/run/netns/" + netns)
    assert our_dnsmasq_pids() == []
    daemons.start()
    assert_daemons_in_netns(netns)
    wait_for(lambda: net_info("default").get("Active") == "yes", 30, "'default' to start")
    assert_network_up(netns)


@pytest.mark.disruptive
def test_daemons_outside_the_namespace_are_started_in_a_new_one(netns, daemons):
    """Daemons found outside the namespace (removed behind their back) are
    started again in a new one, with one dnsmasq."""
    old = {d: daemon_pid(d) for d in DAEMONS}
    run(["ip", "netns", "del", netns])
    out = run([VIRT_ENV, "start"])[1]
    assert "do not run in the network namespace" in out, out
    assert_daemons_in_netns(netns)
    new = {d: daemon_pid(d) for d in DAEMONS}
    assert all(old[d] != new[d] for d in DAEMONS), (old, new)
    wait_for(lambda: net_info("default").get("Active") == "yes", 30, "'default' to start")
    assert_network_up(netns)
