"""A small TAP harness for the integration suites.

Steps run in order and share state; a failing step is reported and the
suite goes on, and the cleanups registered with Suite.cleanup always run,
so a failure never leaves pools, domains or files behind.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The private libvirt of the version under test, _build/prefix-<version>
# (tools/virt-env exec sets it).
PREFIX = os.environ["STORMPOOL_PREFIX"]
TEST_TMP = os.path.join(TOP, "_build", "test-tmp")


class CommandFailed(AssertionError):
    pass


def run(argv, check=True, input=None):
    """Run a command; return (returncode, stdout, stderr) as text."""
    proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if check and proc.returncode != 0:
        raise CommandFailed("%s exited with %d\nstdout: %s\nstderr: %s" %
                            (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


STORAGED_LOG = os.path.join(PREFIX, "var", "log", "libvirt", "virtstoraged.log")
# Commands after which libvirt refreshes a pool, whose refresh hands its
# slow work (replica copies and rebuilds, hot-set learning, collection,
# stamps) to the pool's background worker.
REFRESHING = ("pool-refresh", "pool-start")
POOL_WORK_TIMEOUT = 300


def log_size():
    try:
        return os.path.getsize(STORAGED_LOG)
    except OSError:
        return 0


def pool_target(pool):
    import xml.etree.ElementTree as ET
    rc, out, _ = run(["virsh", "-q", "pool-dumpxml", pool], check=False)
    if rc != 0:
        return None
    path = ET.fromstring(out).find("target/path")
    return path.text if path is not None else None


def wait_pool_work(pool, offset):
    """Wait until the background work that a refresh of @pool queued after
    log offset @offset is done: the worker's debug lines, in order. Where
    the daemon's log no longer carries them (a benchmark lowered its
    level), a fixed pause instead."""
    target = pool_target(pool)
    if target is None:
        return
    queued = "pool '%s': refresh queued its background work" % target
    done = "pool '%s': background work done" % target
    deadline = time.monotonic() + POOL_WORK_TIMEOUT
    while time.monotonic() < deadline:
        with open(STORAGED_LOG, "rb") as f:
            f.seek(offset if log_size() >= offset else 0)
            text = f.read().decode("utf-8", "replace")
        at = text.find(queued)
        if at < 0 and time.monotonic() > deadline - POOL_WORK_TIMEOUT + 5:
            print("# no background work of pool %s in the log: waited 5 s" % pool)
            return
        if at >= 0 and text.find(done, at) >= 0:
            return
        time.sleep(0.02)
    raise AssertionError("the background work of pool %s is not done after %d s"
                         % (pool, POOL_WORK_TIMEOUT))


def virsh(*args, check=True, wait=True):
    """The private virsh (tools/virt-env exec puts it first on PATH). After
    a command that refreshes a pool, wait for the pool's background work
    (@wait), as the suites expect its results at once."""
    offset = log_size()
    rc, out, _ = run(["virsh", "-q"] + list(args), check=check)
    refreshed = [a for a in args if not a.startswith("-")]
    if wait and rc == 0 and len(refreshed) >= 2 and refreshed[0] in REFRESHING:
        wait_pool_work(refreshed[1], offset)
    return out


def virsh_fails(*args, expect):
    """Assert that virsh fails and that its error contains @expect."""
    rc, out, err = run(["virsh", "-q"] + list(args), check=False)
    if rc == 0:
        raise AssertionError("virsh %s succeeded, expected an error with %r\n%s" %
                             (" ".join(args), expect, out))
    if expect not in err:
        raise AssertionError("virsh %s: expected %r in the error, got:\n%s" %
                             (" ".join(args), expect, err))
    return err


def vol_names(pool):
    """Volume names of @pool, sorted (virsh 9.0's vol-list has no --name)."""
    import libvirt
    conn = libvirt.open()
    try:
        return sorted(conn.storagePoolLookupByName(pool).listVolumes())
    finally:
        conn.close()


def define_pool(name, primary, secondary, replica=None, extra=""):
    """Define a stormpool pool from XML (pool-define-as cannot set our
    namespace); @replica is the replica policy, or None for the default."""
    setting = ""
    if replica:
        setting = "<stormpool:replica %s/>" % replica
    xml = """<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>
  <name>%s</name>
  <source><dir path='%s'/></source>
  <target><path>%s</path></target>
  %s%s
</pool>""" % (name, primary, secondary, setting, extra)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", dir=TEST_TMP, delete=False) as f:
        f.write(xml)
    try:
        virsh("pool-define", f.name)
    finally:
        os.unlink(f.name)


def replica_dir(secondary, template_name):
    return os.path.join(secondary, ".stormpool-replicas", template_name)


def backing_template(overlay, secondary):
    """The template an instance backs onto, through a replica or not:
    (template file name, backing path)."""
    backing = qemu_img_info(overlay)["backing-filename"]
    parent = os.path.dirname(backing)
    if os.path.dirname(parent) == os.path.join(secondary, ".stormpool-replicas"):
        return os.path.basename(parent), backing
    return os.path.basename(backing), backing


def daemon_alive():
    rc, out, _ = run(["virsh", "-q", "version"], check=False)
    return rc == 0


def qemu_img_info(path):
    out = run(["qemu-img", "info", "--output=json", "-U", path])[1]
    return json.loads(out)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_tmpdir(prefix):
    """A directory on a disk-backed file system (O_DIRECT works there)."""
    os.makedirs(TEST_TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=TEST_TMP)


# The pool's record of its templates' stamps (README, "Template changes
# behind libvirt's back"): bookkeeping of the pool, never a volume.
STAMPS_FILE = ".stormpool-template-stamps"


def listdir(path):
    """The directory's entries, without the pool's stamps file."""
    if not os.path.isdir(path):
        return []
    return sorted(f for f in os.listdir(path) if f != STAMPS_FILE)


def assert_pattern(path, pattern, offset, length):
    """The qcow2 image at @path reads @pattern at @offset+@length, through
    its whole chain, without taking its lock."""
    rc, out, err = run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c",
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


class Suite:
    def __init__(self, name):
        self.name = name
        self.count = 0
        self.failed = 0
        self.cleanups = []
        print("# suite %s" % name)

    def step(self, description):
        """Decorator: run the function now as one TAP test."""
        def wrap(func):
            self.count += 1
            try:
                func()
            except Exception:
                self.failed += 1
                print("not ok %d - %s" % (self.count, description))
                for line in traceback.format_exc().splitlines():
                    print("#   " + line)
            else:
                print("ok %d - %s" % (self.count, description))
            sys.stdout.flush()
            return func
        return wrap

    def skip(self, description, reason):
        self.count += 1
        print("ok %d - %s # SKIP %s" % (self.count, description, reason))

    def cleanup(self, func, *args):
        self.cleanups.append((func, args))

    def cleanup_pool(self, name):
        def undo():
            run(["virsh", "-q", "pool-destroy", name], check=False)
            run(["virsh", "-q", "pool-undefine", name], check=False)
        self.cleanups.append((undo, ()))

    def cleanup_dir(self, path):
        self.cleanups.append((shutil.rmtree, (path, True)))

    def finish(self):
        for func, args in reversed(self.cleanups):
            try:
                func(*args)
            except Exception as exc:
                print("# cleanup %s failed: %s" % (getattr(func, "__name__", func), exc))
        print("1..%d" % self.count)
        sys.exit(1 if self.failed else 0)


def start_watchdog(suite, seconds, before_exit=None):
    """Bound a whole suite in time: if it still runs after @seconds (a call
    into a hung daemon never returns, say), report a failed test, call
    @before_exit (to kill the suite's child processes) and exit at once,
    without the cleanups, which could hang the same way. Returns the timer;
    cancel() it when the suite is done."""
    import threading
    main = threading.main_thread().ident

    def expire():
        suite.count += 1
        print("not ok %d - the suite finished within %d s # timed out" %
              (suite.count, seconds))
        frame = sys._current_frames().get(main)
        for line in traceback.format_stack(frame) if frame else []:
            print("#   " + line.rstrip().replace("\n", "\n#   "))
        if before_exit:
            try:
                before_exit()
            except Exception as exc:
                print("# watchdog: %s" % exc)
        print("1..%d" % suite.count)
        sys.stdout.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def template_data_paths(pool, template_path):
    """The files an instance of the template @template_path in the stormpool
    pool @pool may back onto: the template itself and its replicas in the
    secondary tier, as the pool's live XML lists them
    (<stormpool:replicas><stormpool:replica template= path=>)."""
    import xml.etree.ElementTree as ET
    ns = "{urn:stormpool:pool:1.0}"
    root = ET.fromstring(virsh("pool-dumpxml", pool))
    name = os.path.basename(template_path)
    paths = {template_path}
    for replica in root.iter(ns + "replica"):
        if replica.get("template") == name and replica.get("path"):
            paths.add(replica.get("path"))
    return paths
