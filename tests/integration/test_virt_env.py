"""tools/virt-env supervises the private daemons through a cgroup.

Every process of the private libvirt (the four daemons, their networks'
dnsmasq, their guests' QEMU) runs in one cgroup, which tools/virt-env
creates for the prefix: stop leaves no process behind even when the pid
files and guests' status files are gone, and start takes over daemons
started before they had a cgroup instead of starting them twice. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_virt_env.py -k leftover
"""

import os
import shutil

import pytest

import stormpool_client as sp
from stormpool_client import wait_for

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIRT_ENV = os.path.join(TOP, "tools", "virt-env")
DAEMONS = ["virtnetworkd", "virtqemud", "virtsecretd", "virtstoraged"]
TINY = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><graphics type='vnc'/></devices>
</domain>"""

pytestmark = pytest.mark.disruptive


def cgroup_dir():
    """The daemons' cgroup, as tools/virt-env status names it."""
    _, out, _ = sp.run([VIRT_ENV, "status"], check=False)
    line = [x for x in out.splitlines() if x.startswith("cgroup: ")][0]
    return line.split()[1]


def members(cgroup):
    """{pid: command name} of the processes in the cgroup."""
    if not os.path.isdir(cgroup):
        return {}
    with open(os.path.join(cgroup, "cgroup.procs")) as f:
        pids = [int(x) for x in f.read().split()]
    names = {}
    for pid in pids:
        try:
            with open("/proc/%d/comm" % pid) as f:
                names[pid] = f.read().strip()
        except FileNotFoundError:
            pass                # exited since
    return names


def running_guest(conn, name):
    """A transient 32 MiB guest with no disk (its firmware idles): a QEMU
    process of the private virtqemud."""
    try:
        conn.lookupByName(name).destroy()
    except sp.libvirt.libvirtError:
        pass
    return conn.createXML(TINY % name, 0)


def qemu_pid(prefix, name):
    with open(os.path.join(prefix, "var", "run", "libvirt", "qemu", name + ".pid")) as f:
        return int(f.read().strip())


def gone(pid):
    """The process has ended (a zombie its parent has not reaped counts)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_every_process_is_in_the_cgroup(conn, daemons, prefix):
    """The daemons, the default network's dnsmasq and a guest's QEMU are
    all members of the cgroup."""
    daemons.start()
    dom = running_guest(conn, "sp-venv-member")
    try:
        names = members(cgroup_dir())
        assert qemu_pid(prefix, "sp-venv-member") in names
        assert sorted(n for n in names.values() if n.startswith("virt")) == DAEMONS
        assert "dnsmasq" in names.values()
    finally:
        dom.destroy()


def test_stop_kills_leftovers_of_a_removed_run_directory(conn, daemons, prefix):
    """With the run directory gone (pid files, sockets, the guest's status),
    stop still ends every daemon, the dnsmasq and the guest's QEMU, and
    removes the cgroup; start brings the daemons back."""
    daemons.start()
    running_guest(conn, "sp-venv-leftover")
    pid = qemu_pid(prefix, "sp-venv-leftover")
    cgroup = cgroup_dir()
    before = members(cgroup)
    shutil.rmtree(os.path.join(prefix, "var", "run"))
    _, out, _ = sp.run([VIRT_ENV, "stop"])
    assert "killing qemu-system-x86 process %d" % pid in out, out
    for p in before:
        wait_for(lambda: gone(p), 10, "pid %d to end" % p)
    assert not os.path.exists(cgroup)
    daemons.start()
    assert daemons.status() == 0


def test_start_takes_over_daemons_started_without_cgroup(daemons, prefix):
    """Daemons running outside the cgroup (started by an older virt-env)
    are moved into it by start, not started a second time."""
    daemons.start()
    cgroup = cgroup_dir()
    hierarchy = os.path.dirname(cgroup)
    pids = {p: n for p, n in members(cgroup).items() if n in DAEMONS}
    for pid in pids:
        with open(os.path.join(hierarchy, "cgroup.procs"), "w") as f:
            f.write("%d\n" % pid)
    assert not set(pids) & set(members(cgroup))
    _, out, _ = sp.run([VIRT_ENV, "start"])
    assert "starting" not in out, out
    for pid, name in pids.items():
        assert "supervising %s (pid %d)" % (name, pid) in out, out
    after = {p: n for p, n in members(cgroup).items() if n in DAEMONS}
    assert after == pids
