"""Fixtures of the pytest integration suites.

Run them against the private daemons, one file or one test at a time:

    LIBVIRT=9.0.0 tools/virt-env start
    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_replicas.py -k eager

Every test builds what it needs: its own directories (`workdir`, `tiers`),
its own pools (`pool`, named spt-*), its own templates (`template`);
nothing is handed from one test to the next. Whatever a test made is
removed when it ends, passed or failed. What is expensive and never
changed by a test (a 1 GiB template of random data) is made once per
session (`big_template`).

Markers:
  disruptive   the test stops or kills the shared private daemons
               (deselect with -m 'not disruptive' while others use them)
  time_limit(s) the test's time bound (default 300 s): past it, the tracebacks
               of every thread are printed and the run ends with status 1
"""

import collections
import faulthandler
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import make_template, qemu_io, sha256

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# On the disk (O_DIRECT works there; /tmp may be a tmpfs).
TEST_TMP = os.path.join(TOP, "_build", "test-tmp")
VIRT_ENV = os.path.join(TOP, "tools", "virt-env")
MiB = 1024 * 1024
GiB = 1024 * MiB
REPLICAS = sp.REPLICAS
TMP_PREFIX = sp.TMP_PREFIX
DEFAULT_TIME_LIMIT = 300

Tiers = collections.namedtuple("Tiers", "primary secondary")


def pytest_configure(config):
    config.addinivalue_line("markers", "disruptive: stops or kills the shared private daemons")
    config.addinivalue_line("markers", "time_limit(seconds): the test's time bound")
    # A refused call raises libvirtError, checked by its code; libvirt's
    # default handler would print each one on stderr as well.
    libvirt.registerErrorHandler(lambda ctx, err: None, None)


# ---- the environment -----------------------------------------------------------

@pytest.fixture(scope="session")
def prefix():
    """The private libvirt's prefix (tools/virt-env exec sets it)."""
    if "STORMPOOL_PREFIX" not in os.environ:
        pytest.fail("run the integration tests under tools/virt-env exec", pytrace=False)
    return os.environ["STORMPOOL_PREFIX"]


@pytest.fixture
def conn(prefix):
    """A connection to the private daemons (python3-libvirt), one per test:
    the daemons are shared, and others may restart them between tests."""
    c = sp.connect()
    yield c
    try:
        c.close()
    except libvirt.libvirtError:
        pass                    # a test restarted the daemons


@pytest.fixture
def virsh(prefix):
    """The private virsh: virsh("pool-refresh", name) returns its output,
    and waits for the background work a refresh queued (wait=False not)."""
    return sp.virsh


@pytest.fixture(autouse=True)
def time_limit(request):
    """Bound each test in time: a call into a hung daemon never returns.
    Past the limit, every thread's traceback, then exit status 1 at once
    (cleanups could hang the same way)."""
    marker = request.node.get_closest_marker("time_limit")
    seconds = marker.args[0] if marker else DEFAULT_TIME_LIMIT
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


class Daemons:
    """The shared private daemons (tools/virt-env), for the tests that stop
    or kill them (marked disruptive)."""

    def __init__(self, prefix):
        self.prefix = prefix

    def storaged_pid(self):
        with open(os.path.join(self.prefix, "var", "run", "virtstoraged.pid")) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == "virtstoraged"
        return pid

    def start(self):
        """tools/virt-env start: idempotent, starts what does not run."""
        sp.run([VIRT_ENV, "start"])

    def stop(self):
        sp.run([VIRT_ENV, "stop"])

    def status(self):
        """tools/virt-env status: 0 if every daemon runs."""
        return sp.run([VIRT_ENV, "status"], check=False)[0]

    @staticmethod
    def alive():
        return sp.daemon_alive()


@pytest.fixture
def daemons(prefix):
    """The shared private daemons; whatever a test did to them, they run
    again at its end."""
    d = Daemons(prefix)
    yield d
    d.start()


# ---- directories, tiers, tmpfs ---------------------------------------------------

def _short(request):
    """The test's name, fit for pool and directory names."""
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name.replace("test_", "", 1))[:36].strip("-")


@pytest.fixture
def workdir(request):
    """A fresh directory on the disk for this test, removed at its end."""
    os.makedirs(TEST_TMP, exist_ok=True)
    path = tempfile.mkdtemp(prefix="spt-%s-" % _short(request), dir=TEST_TMP)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    assert not os.path.exists(path), "%s left behind" % path


@pytest.fixture
def tiers(workdir):
    """tiers(name) -> Tiers(primary, secondary): fresh paths under the
    test's directory, made by pool-build; @secondary puts the secondary
    tier elsewhere (on a tmpfs, say)."""
    def make(name="pool", secondary=None):
        return Tiers(os.path.join(workdir, name, "hdd"),
                     secondary or os.path.join(workdir, name, "ssd"))
    return make


@pytest.fixture
def tmpfs(workdir):
    """tmpfs(size) -> the mount point of a fresh tmpfs of @size (a mount
    option: '64m'), unmounted at the end of the test (after its pools are
    gone: the `pool` fixture depends on this one)."""
    mounts = []

    def mount(size="64m", name="tmpfs"):
        point = os.path.join(workdir, name)
        os.makedirs(point)
        sp.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "spt-tmpfs", point])
        mounts.append(point)
        return point
    yield mount
    for point in reversed(mounts):
        if os.path.ismount(point):
            if sp.run(["umount", point], check=False)[0] != 0:
                sp.run(["umount", "-l", point], check=False)
    for point in mounts:
        assert not os.path.ismount(point), "%s still mounted" % point
    with open("/proc/mounts") as f:
        assert workdir not in f.read(), "a mount under %s left" % workdir


# ---- pools -------------------------------------------------------------------------

class Pool:
    """A stormpool pool of a test, with its tiers."""

    def __init__(self, conn, name, primary, secondary):
        self.conn = conn
        self.name = name
        self.primary = primary
        self.secondary = secondary

    def __repr__(self):
        return "Pool(%s)" % self.name

    @property
    def obj(self):
        return self.conn.storagePoolLookupByName(self.name)

    def template_path(self, name):
        return os.path.join(self.primary, name)

    def path(self, name):
        """Path of an instance (in the secondary tier)."""
        return os.path.join(self.secondary, name)

    def vol(self, name):
        return self.obj.storageVolLookupByName(name)

    def vol_names(self):
        return sp.vol_names(self.name, self.conn)

    def running(self):
        try:
            return bool(self.obj.isActive())
        except libvirt.libvirtError:
            return False

    def start(self, wait=True):
        sp.start_pool(self.obj, wait)

    def refresh(self, wait=True):
        sp.refresh_pool(self.obj, wait)

    def create_volume(self, name, capacity, fmt="qcow2", backing_vol=None,
                      backing_format="qcow2"):
        """vol-create-as through the API (where a refusal's error code is
        checked)."""
        return sp.create_volume(self.conn, self.name, name, capacity, fmt,
                                backing_vol, backing_format)

    def xml(self):
        return self.obj.XMLDesc(0)


def wait_no_copy_in_progress(secondary, timeout=60):
    """Let background replica copies end before a pool and its directories
    go: no temporary file left under its replica directories."""
    deadline = time.monotonic() + timeout
    top = os.path.join(secondary, REPLICAS)
    while time.monotonic() < deadline:
        busy = [f for _, _, files in os.walk(top) for f in files if f.startswith(TMP_PREFIX)]
        if not busy:
            return
        time.sleep(0.1)


def remove_pool(name):
    sp.run(["virsh", "-q", "pool-destroy", name], check=False)
    sp.run(["virsh", "-q", "pool-undefine", name], check=False)


@pytest.fixture
def pool(request, conn, tiers, tmpfs):
    """pool(replica=None, tiers=None, start=True, ...) -> Pool: defines,
    builds and (by default) starts a stormpool pool named spt-<test>-N on
    fresh tiers (or @tiers); @replica is the <stormpool:replica> attributes
    ("policy='copy' prepare='eager'"). At the end of the test every pool
    it made is destroyed and undefined, after its replica copies ended;
    the directories go with the test's directory."""
    made = []

    def make(replica=None, tiers=None, start=True, build=True, autostart=False,
             extra="", suffix=None):
        t = tiers or make.tiers("p%d" % (len(made) + 1))
        name = "spt-%s-%s" % (_short(request), suffix or len(made) + 1)
        remove_pool(name)          # left by an interrupted earlier run
        made.append((name, t.secondary))
        sp.define_pool(conn, name, t.primary, t.secondary, replica, extra)
        p = Pool(conn, name, t.primary, t.secondary)
        if build:
            p.obj.build(0)
        if start:
            p.start()
        if autostart:
            p.obj.setAutostart(1)
        return p
    make.tiers = tiers
    yield make
    left = []
    for name, secondary in reversed(made):
        wait_no_copy_in_progress(secondary)
        remove_pool(name)
    # a fresh connection: the test may have restarted the daemons
    with sp.connection() as c:
        for name, _ in made:
            try:
                c.storagePoolLookupByName(name)
                left.append(name)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
    assert left == [], "pools left: %s" % left
    assert sp.daemon_alive(), "virsh version does not answer"


# ---- guests -------------------------------------------------------------------------

@pytest.fixture
def guest(request, conn):
    """guest(pool, volume) -> name: a running firmware-only guest
    (stormpool_client.firmware_guest_xml) named spt-<test>-N whose disk is
    the volume @volume of the Pool @pool; destroyed and undefined at the
    end of the test, before its pools go (`guest` depends on `conn` only,
    so list it after `pool` in a test's arguments)."""
    made = []

    def make(pool, volume):
        name = "spt-%s-%d" % (_short(request), len(made) + 1)
        sp.remove_domain(name)      # left by an interrupted earlier run
        made.append(name)
        dom = conn.defineXML(sp.firmware_guest_xml(name, pool.name, volume))
        dom.create()
        return name
    yield make
    for name in reversed(made):
        sp.remove_domain(name)


# ---- images ----------------------------------------------------------------------

@pytest.fixture
def template():
    """template(path, size, writes=(), prealloc=False, backing=None): a
    qcow2 template made with qemu-img and written with qemu-io; @writes are
    (pattern, offset, length). Returns its path."""
    return make_template


@pytest.fixture(scope="session")
def reflinks():
    """Whether the tests' file system clones files (FICLONE): then a
    replica copy is instant and cannot be caught, or killed, in the middle."""
    os.makedirs(TEST_TMP, exist_ok=True)
    d = tempfile.mkdtemp(prefix="spt-reflink-", dir=TEST_TMP)
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    with open(a, "wb") as f:
        f.write(b"x" * 65536)
    rc = sp.run(["cp", "--reflink=always", a, b], check=False)[0]
    shutil.rmtree(d)
    return rc == 0


@pytest.fixture
def slow_copy(reflinks):
    """For a test that needs a replica copy under way: skipped where the
    file system reflinks (the copy is instant)."""
    if reflinks:
        pytest.skip("the file system reflinks: a replica copy is instant")


BigTemplate = collections.namedtuple("BigTemplate", "path size sha256")


@pytest.fixture(scope="session")
def big_template():
    """A 1 GiB qcow2 template full of random data, made once per session;
    tests link or copy it into their tiers and never write to it. The
    pattern file's odd length makes every block different."""
    os.makedirs(TEST_TMP, exist_ok=True)
    d = tempfile.mkdtemp(prefix="spt-big-", dir=TEST_TMP)
    path = os.path.join(d, "big.qcow2")
    pattern = os.path.join(d, "random.pat")
    t0 = time.monotonic()
    with open(pattern, "wb") as f:
        f.write(os.urandom(64 * MiB + 1))
    sp.run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(GiB)])
    qemu_io(path, "write -q -s %s 0 %d" % (pattern, GiB))
    os.unlink(pattern)
    os.chmod(path, 0o444)
    print("# 1 GiB random template made in %.1f s" % (time.monotonic() - t0))
    yield BigTemplate(path, GiB, sha256(path))
    shutil.rmtree(d, ignore_errors=True)


class Children(list):
    pass


@pytest.fixture
def children():
    """Processes a test starts in the background (children.start(virsh
    args...) runs virsh): killed at its end if still there."""
    procs = Children()

    def start(*args):
        proc = subprocess.Popen(["virsh", "-q"] + list(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc
    procs.start = start
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- pools a test defines itself (test_bad_input, test_classroom) ---------------------

@pytest.fixture
def pool_names(request):
    """pool_names(name=None) -> name: a pool the test defines by itself
    (through virsh pool-define-as, or a test-xml case whose name is fixed),
    spt-<test>-dN unless @name is given. A pool of that name left by an
    interrupted run goes first; at the end of the test each is destroyed
    and undefined (its files go with the test's directory), and checked
    gone."""
    names = []

    def register(name=None):
        name = name or "spt-%s-d%d" % (_short(request), len(names) + 1)
        remove_pool(name)
        names.append(name)
        return name
    yield register
    for name in reversed(names):
        remove_pool(name)
    with sp.connection() as c:
        left = [p.name() for p in c.listAllStoragePools(0) if p.name() in names]
    assert left == [], "pools left: %s" % left
