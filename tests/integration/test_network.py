"""The private daemons' network: the README's virt-install command as written.

tools/virt-env runs virtnetworkd with the other daemons, all in a network
namespace of their own, so that the network 'default' that libvirt installs
(virbr0, 192.168.122.0/24, DHCP by dnsmasq) works as on a real host while the
host's own interfaces, routes and firewall stay untouched. The suite checks:

  * the daemons run in that namespace, not in the host's;
  * 'default' is active and autostarted, its bridge and dnsmasq live there;
  * dnsmasq hands out an address on the bridge (a DHCP DISCOVER from a veth
    in a namespace of the test's own gets an OFFER from 192.168.122.0/24);
  * virt-install --network network=default --disk vol=POOL/VOL (the README's
    command) starts a guest on a stormpool instance, its tap on virbr0 in the
    daemons' namespace and none of it in the host's, its VNC server on a
    UNIX socket that a viewer on the host reaches;
  * tools/virt-env stop leaves no dnsmasq, no namespace; start brings the
    autostarted network back, as a boot does; daemons found outside the namespace (it was removed behind
    their back) are restarted into a new one.

Every name starts with "spn-"; the domain, the volumes, the pool, the test's
namespace and veth and the directories are removed at the end even when a
step fails.
"""

import hashlib
import os
import re
import socket
import subprocess
import textwrap

from taplib import (PREFIX, Suite, define_pool, make_tmpdir, run, start_watchdog,
                    virsh, TOP, wait_for)

POOL = "spn-pool"
DOM = "spn-desktop"
TEMPLATE = "spn-template.qcow2"
INSTANCE = "spn-pc01.qcow2"
VIRT_ENV = os.path.join(TOP, "tools", "virt-env")
NETNS = "stormpool-" + hashlib.sha256(PREFIX.encode()).hexdigest()[:12]
CLIENT_NETNS = "spn-client-%d" % os.getpid()
VETH = "spn-veth%d" % (os.getpid() % 10000)
DAEMONS = ["virtsecretd", "virtnetworkd", "virtstoraged", "virtqemud"]
SUITE_TIMEOUT = 600

suite = Suite("network")
watchdog = start_watchdog(suite, SUITE_TIMEOUT)
root = make_tmpdir("spn-")
suite.cleanup_dir(root)
primary = os.path.join(root, "hdd")
secondary = os.path.join(root, "ssd")


def step(description):
    return suite.step(description)


def netns_inode(path):
    return os.stat(path).st_ino


def daemon_pid(daemon):
    with open(os.path.join(PREFIX, "var", "run", daemon + ".pid")) as f:
        return int(f.read().strip())


def in_netns(argv, check=True):
    return run(["ip", "netns", "exec", NETNS] + argv, check=check)[1]


def our_dnsmasq_pids():
    marker = os.path.join(PREFIX, "var", "lib", "libvirt", "dnsmasq") + "/"
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
    for line in virsh("net-info", name).splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def assert_network_up():
    info = net_info("default")
    assert info.get("Active") == "yes" and info.get("Autostart") == "yes", info
    assert info.get("Bridge") == "virbr0", info
    addr = in_netns(["ip", "-o", "-4", "addr", "show", "dev", "virbr0"])
    assert "192.168.122.1/24" in addr, addr
    # one dnsmasq (with its lease script helper, a child) per network
    with open(os.path.join(PREFIX, "var", "run", "libvirt", "network", "default.pid")) as f:
        main = int(f.read().strip())
    pids = our_dnsmasq_pids()
    assert main in pids, (main, pids)
    assert all(p == main or parent_pid(p) == main for p in pids), (main, pids)
    for pid in pids:
        assert netns_inode("/proc/%d/ns/net" % pid) == netns_inode("/run/netns/" + NETNS), \
            "dnsmasq %d is not in the namespace %s" % (pid, NETNS)


def assert_daemons_in_netns():
    want = netns_inode("/run/netns/" + NETNS)
    host = netns_inode("/proc/self/ns/net")
    assert want != host, "the namespace %s is the host's" % NETNS
    for daemon in DAEMONS:
        pid = daemon_pid(daemon)
        assert netns_inode("/proc/%d/ns/net" % pid) == want, \
            "%s (pid %d) is not in the namespace %s" % (daemon, pid, NETNS)


@step("the private daemons run in a network namespace of their own, not the host's")
def _():
    assert os.path.exists("/run/netns/" + NETNS), NETNS
    assert_daemons_in_netns()
    # the bridge is in the namespace; the host's namespace has no interface
    # with its address (a virbr0 there would be another libvirt's)
    bridge = in_netns(["ip", "-o", "link", "show", "dev", "virbr0"])
    mac = re.search(r"link/ether ([0-9a-f:]{17})", bridge).group(1)
    assert mac not in run(["ip", "-o", "link"])[1], mac


@step("the network 'default' is active and autostarted, virbr0 192.168.122.1/24 and "
      "its dnsmasq in the daemons' namespace")
def _():
    assert "default" in virsh("net-list", "--name").split()
    assert_network_up()


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


def remove_client():
    run(["ip", "netns", "exec", NETNS, "ip", "link", "del", VETH], check=False)
    run(["ip", "netns", "del", CLIENT_NETNS], check=False)


@step("dnsmasq of 'default' offers an address of 192.168.122.0/24 to a client on virbr0")
def _():
    suite.cleanup(remove_client)
    peer = VETH + "p"
    run(["ip", "netns", "add", CLIENT_NETNS])
    in_netns(["ip", "link", "add", VETH, "type", "veth", "peer", "name", peer])
    in_netns(["ip", "link", "set", peer, "netns", CLIENT_NETNS])
    in_netns(["ip", "link", "set", VETH, "master", "virbr0", "up"])
    client = ["ip", "netns", "exec", CLIENT_NETNS]
    run(client + ["ip", "link", "set", "lo", "up"])
    run(client + ["ip", "link", "set", peer, "up"])
    out = run(client + ["ip", "-o", "link", "show", "dev", peer])[1]
    mac = re.search(r"link/ether ([0-9a-f:]{17})", out).group(1)
    offered = run(client + ["/usr/bin/python3", "-c", DHCP_CLIENT, peer, mac])[1].strip()
    assert re.fullmatch(r"192\.168\.122\.(\d+)", offered), offered
    assert 2 <= int(offered.rsplit(".", 1)[1]) <= 254, offered
    remove_client()


def remove_domain():
    run(["virsh", "-q", "destroy", DOM], check=False)
    run(["virsh", "-q", "undefine", DOM], check=False)


@step("the README's virt-install --network network=default --disk vol=%s/%s starts a "
      "guest with its tap on virbr0, in the daemons' namespace only, VNC on a UNIX socket" % (POOL, INSTANCE))
def _():
    os.makedirs(primary)
    os.makedirs(secondary)
    suite.cleanup_pool(POOL)
    define_pool(POOL, primary, secondary)
    virsh("pool-build", POOL)
    virsh("pool-start", POOL)
    virsh("vol-create-as", POOL, TEMPLATE, "64M", "--format", "qcow2")
    virsh("vol-create-as", POOL, INSTANCE, "64M", "--format", "qcow2",
          "--backing-vol", TEMPLATE, "--backing-vol-format", "qcow2")
    suite.cleanup(remove_domain)
    proc = subprocess.run(
        ["virt-install", "--name", DOM, "--memory", "64", "--vcpus", "1", "--import",
         "--virt-type", "qemu",
         "--disk", "vol=%s/%s,bus=virtio,cache=none" % (POOL, INSTANCE),
         "--osinfo", "detect=on,require=off", "--network", "network=default",
         "--graphics", "vnc", "--noautoconsole"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout
    assert virsh("domstate", DOM).strip() == "running"
    rows = [line.split() for line in virsh("domiflist", DOM).splitlines()]
    assert len(rows) == 1, rows
    tap, kind, source, _model, mac = rows[0]
    assert (kind, source) == ("network", "default"), rows
    link = in_netns(["ip", "-o", "link", "show", "dev", tap])
    assert "master virbr0" in link, link
    # libvirt gives the tap the guest's MAC with fe: first; no interface of
    # the host's namespace has it
    tap_mac = "fe" + mac[2:]
    assert tap_mac in link, link
    assert tap_mac not in run(["ip", "-o", "link"])[1]
    # its VNC server listens on a UNIX socket a viewer on the host reaches
    sock = re.search(r"<listen type='socket' socket='([^']+)'", virsh("dumpxml", DOM))
    assert sock, virsh("dumpxml", DOM)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock.group(1))
        greeting = s.recv(12)
    assert greeting.startswith(b"RFB "), greeting
    remove_domain()


@step("tools/virt-env stop leaves no dnsmasq and no namespace; start brings 'default' back")
def _():
    run([VIRT_ENV, "stop"])
    assert not os.path.exists("/run/netns/" + NETNS)
    assert our_dnsmasq_pids() == []
    run([VIRT_ENV, "start"])
    assert_daemons_in_netns()
    wait_for(lambda: net_info("default").get("Active") == "yes", 30, "'default' to start")
    assert_network_up()


@step("daemons found outside the namespace (removed behind their back) are started "
      "again in a new one, with one dnsmasq")
def _():
    old = {d: daemon_pid(d) for d in DAEMONS}
    run(["ip", "netns", "del", NETNS])
    out = run([VIRT_ENV, "start"])[1]
    assert "do not run in the network namespace" in out, out
    assert_daemons_in_netns()
    new = {d: daemon_pid(d) for d in DAEMONS}
    assert all(old[d] != new[d] for d in DAEMONS), (old, new)
    wait_for(lambda: net_info("default").get("Active") == "yes", 30, "'default' to start")
    assert_network_up()


watchdog.cancel()
suite.finish()
