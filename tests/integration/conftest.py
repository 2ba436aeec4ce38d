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
import hashlib
import json
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

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# On the disk (O_DIRECT works there; /tmp may be a tmpfs).
TEST_TMP = os.path.join(TOP, "_build", "test-tmp")
VIRT_ENV = os.path.join(TOP, "tools", "virt-env")
MiB = 1024 * 1024
GiB = 1024 * MiB
TMP_PREFIX = ".stormpool-tmp-"
REPLICAS = ".stormpool-replicas"
DEFAULT_TIME_LIMIT = 300

Tiers = collections.namedtuple("Tiers", "primary secondary")


def pytest_configure(config):
    config.addinivalue_line("markers", "disruptive: stops or kills the shared private daemons")
    config.addinivalue_line("markers", "time_limit(seconds): the test's time bound")


# ---- the environment -----------------------------------------------------------

@pytest.fixture(scope="session")
def prefix():
    """The private libvirt's prefix (tools/virt-env exec sets it)."""
    if "STORMPOOL_PREFIX" not in os.environ:
        pytest.fail("run the integration tests under tools/virt-env exec", pytrace=False)
    return os.environ["STORMPOOL_PREFIX"]


@pytest.fixture(scope="session")
def conn(prefix):
    """A connection to the private daemons (python3-libvirt)."""
    c = sp.connect()
    yield c
    c.close()


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


def daemon_alive():
    return sp.run(["virsh", "-q", "version"], check=False)[0] == 0


def virt_env_start():
    sp.run([VIRT_ENV, "start"])


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
    test's directory, made by pool-build."""
    def make(name="pool", base=None):
        base = base or workdir
        return Tiers(os.path.join(base, name, "hdd"), os.path.join(base, name, "ssd"))
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
        try:
            conn.storagePoolLookupByName(name)
            left.append(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
    assert left == [], "pools left: %s" % left


# ---- images --------------------------------------------------------------------------

def qemu_io(path, *commands, fmt="qcow2", cor=False):
    argv = ["qemu-io", "-f", fmt] + (["-C"] if cor else [])
    for c in commands:
        argv += ["-c", c]
    return sp.run(argv + [path])[1]


def qemu_img_info(path):
    return json.loads(sp.run(["qemu-img", "info", "--output=json", "-U", path])[1])


def backing_of(overlay):
    return qemu_img_info(overlay)["backing-filename"]


def make_template(path, size, writes=(), prealloc=False, backing=None):
    """A real qcow2 image at @path; @writes are (pattern, offset, length)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if prealloc:
        argv += ["-o", "preallocation=metadata"]
    if backing:
        argv += ["-b", backing, "-F", "qcow2"]
    sp.run(argv + [path] + ([str(size)] if size else []))
    if writes:
        qemu_io(path, *["write -q -P 0x%02x %d %d" % w for w in writes])
    return path


@pytest.fixture
def template():
    """template(path, size, writes=(), prealloc=False, backing=None): a
    qcow2 template made with qemu-img and written with qemu-io; @writes are
    (pattern, offset, length). Returns its path."""
    return make_template


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def assert_pattern(path, pattern, offset, length):
    """The qcow2 image at @path reads @pattern at @offset+@length, through
    its whole chain, without taking its lock."""
    rc, out, err = sp.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c",
                           "read -P 0x%02x %d %d" % (pattern, offset, length), path],
                          check=False)
    assert rc == 0 and "Pattern verification failed" not in out + err, \
        "pattern 0x%02x not at %d+%d in %s: %s %s" % (pattern, offset, length, path, out, err)


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll @predicate until it returns something true, and return that;
    fail after @timeout seconds, naming @what was waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


STAMPS_FILE = ".stormpool-template-stamps"


def listdir(path):
    """The directory's entries, without the pool's stamps file."""
    if not os.path.isdir(path):
        return []
    return sorted(f for f in os.listdir(path) if f != STAMPS_FILE)


def tmp_files(d):
    return [f for f in listdir(d) if f.startswith(TMP_PREFIX)]


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


@pytest.fixture
def children():
    """Processes a test starts in the background: killed at its end if
    still there."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def popen_virsh(*args):
    return subprocess.Popen(["virsh", "-q"] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
